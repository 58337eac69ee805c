//! The archiver on the file store: sealed segments, a covering checkpoint and a signed manifest
//! per round, byte for byte; manifests chained; where the archive stands read back from it
//! after a restart; nothing written twice.

mod common;

use agentrail_archive::{ArchiveStore, FileArchive};
use agentrail_event::batch::BatchFormat;
use agentrail_service::archiver::{manifest_end, parse_manifest};
use agentrail_service::{Scope, Service};
use common::archive::{Acme, acme, config, events, keys};

#[test]
fn sealed_segments_checkpoints_and_signed_manifests_reach_the_archive() {
    let Acme {
        dir: _dir,
        data,
        archive,
        service: s,
        root,
        tenant: t,
    } = acme();
    s.create_key(&root, &t, None, &[Scope::EventsRead]).unwrap();
    s.ingest(&t, &events(0, 50), BatchFormat::Ndjson).unwrap();
    let r = s.archive_now(&t).unwrap();
    assert_eq!(r.archived, 50, "{r:?}");
    // Again, nothing new: nothing written.
    let again = s.archive_now(&t).unwrap();
    assert_eq!((again.segments, again.archived), (0, 50));

    let store = FileArchive::new(&archive);
    let listed = keys(&store, "");
    assert_eq!(listed.len(), 3, "{listed:?}");
    let seg = listed.iter().find(|k| k.contains("/segment-")).unwrap();
    assert!(
        seg.ends_with("segment-00000000000000000000-00000000000000000050"),
        "{seg}"
    );
    let manifest_key = listed.iter().find(|k| manifest_end(k) == Some(50)).unwrap();
    let m = parse_manifest(&store.get(manifest_key).unwrap().unwrap()).unwrap();
    assert_eq!((m.manifest.first_seq, m.manifest.end_seq), (0, 50));
    assert!(m.manifest.checkpoint_size >= 50);
    assert!(m.manifest.prev_manifest.is_none());
    // The segment is the sealed file, byte for byte; the manifest names its digest.
    let sealed =
        std::fs::read(agentrail_ledger::DataDir::new(&data).tenant(&t).segment(0)).unwrap();
    assert_eq!(store.get(seg).unwrap().unwrap(), sealed);
    assert_eq!(
        m.manifest.segments[0].sha256,
        agentrail_event::hash::to_hex(&agentrail_event::hash::sha256(&sealed))
    );
    // Signed with the log key, over the manifest's digest.
    let vkey: agentrail_note::Verifier = s.verifier_key().parse().unwrap();
    let (note, _) = agentrail_note::open(m.signature.as_bytes(), &[&vkey]).unwrap();
    assert_eq!(
        note.text,
        format!(
            "{}/archive-manifest\nsha256 {}\n",
            m.manifest.origin,
            m.manifest.digest().unwrap()
        )
    );
    // Retention: the last event's received_at plus the policy's retention days.
    assert!(m.manifest.segments[0].retain_until.len() >= 20);

    // More events; after a restart the archiver finds where the archive stands in it, and the
    // next manifest chains to the first.
    s.ingest(&t, &events(50, 30), BatchFormat::Ndjson).unwrap();
    s.shutdown();
    drop(s);
    let s = Service::open(config(&data, &archive)).unwrap().service;
    let r = s.archive_now(&t).unwrap();
    assert_eq!(r.archived, 80, "{r:?}");
    let listed = keys(&store, "");
    let second = listed.iter().find(|k| manifest_end(k) == Some(80)).unwrap();
    let m2 = parse_manifest(&store.get(second).unwrap().unwrap()).unwrap();
    assert_eq!((m2.manifest.first_seq, m2.manifest.end_seq), (50, 80));
    let prev = m2.manifest.prev_manifest.clone().unwrap();
    assert_eq!(&prev.key, manifest_key);
    assert_eq!(
        prev.sha256,
        agentrail_event::hash::to_hex(&agentrail_event::hash::sha256(
            &store.get(manifest_key).unwrap().unwrap()
        ))
    );
    let metrics = s.metrics_text();
    assert!(
        metrics.contains("agentrail_archive_lag_events 0"),
        "{metrics}"
    );
    s.shutdown();
}

#[test]
fn an_archive_that_cannot_keep_objects_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let e = Service::open(config(&dir.path().join("data"), &file)).unwrap_err();
    assert!(
        e.to_string().contains("cannot keep write-once objects"),
        "{e}"
    );
}

#[test]
fn a_planted_manifest_stops_archiving_loudly() {
    let Acme {
        dir: _dir,
        data,
        archive,
        service: s,
        root: _,
        tenant: t,
    } = acme();
    s.ingest(&t, &events(0, 10), BatchFormat::Ndjson).unwrap();
    assert_eq!(s.archive_now(&t).unwrap().archived, 10);
    s.shutdown();
    drop(s);
    // Someone who can write the archive plants the "newest" manifest: a copy of the real one
    // under a name far ahead (its content says otherwise), and junk.
    let store = FileArchive::new(&archive);
    let real = keys(&store, "")
        .into_iter()
        .find(|k| manifest_end(k).is_some())
        .unwrap();
    let bytes = store.get(&real).unwrap().unwrap();
    for (name, body) in [
        (
            "manifest-00000000000099999999-00000000000000000000.json",
            bytes,
        ),
        (
            "manifest-00000000000099999999-00000000000000000001.json",
            b"junk".to_vec(),
        ),
    ] {
        let planted = format!("acme/2026/12/07/{name}");
        store.put_once(&planted, &body, None).unwrap();
        let s = Service::open(config(&data, &archive)).unwrap().service;
        s.ingest(&t, &events(100, 5), BatchFormat::Ndjson).unwrap();
        let e = s.archive_now(&t).unwrap_err().to_string();
        assert!(e.contains("does not verify") && e.contains(&planted), "{e}");
        s.shutdown();
        drop(s);
        let p = archive.join(&planted);
        std::fs::remove_file(&p).unwrap();
    }
}
