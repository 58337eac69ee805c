//! Appending: sequencing fields, idempotency, all-or-nothing batches, reopen, rollover, many
//! tenants, fsync failure.

mod common;

use agentrail_event::hash::to_hex;
use agentrail_event::validate_bytes;
use agentrail_ledger::stored::StoredHeader;
use agentrail_ledger::{AppendError, Held, Ledger, ReadError};
use common::*;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn stored(l: &Ledger, t: &agentrail_event::TenantId, seq: u64) -> Value {
    serde_json::from_slice(&l.read(t, seq).unwrap().bytes).unwrap()
}

#[test]
fn events_are_sequenced_chained_and_linked() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let t = tenant("acme");
    let receipts = l
        .append(&t, vec![event(0, 1), event(1, 2), event(2, 1)])
        .unwrap();
    assert_eq!(
        receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let e0 = stored(&l, &t, 0);
    let e1 = stored(&l, &t, 1);
    let e2 = stored(&l, &t, 2);
    assert_eq!(e0["prev_hash"], Value::Null);
    assert_eq!(e0["tenant_id"], "acme");
    assert_eq!(e1["prev_hash"], receipts[0].hash.as_str());
    assert_eq!(e2["prev_hash"], receipts[1].hash.as_str());
    // Session s1 holds e0 and e2; s2 only e1.
    assert_eq!(e0["session_seq"], 0);
    assert_eq!(e0["session_prev_hash"], Value::Null);
    assert_eq!(e1["session_seq"], 0);
    assert_eq!(e2["session_seq"], 1);
    assert_eq!(e2["session_prev_hash"], receipts[0].hash.as_str());
    // caused_by resolved, within the same batch too.
    assert_eq!(
        e2["caused_by"],
        serde_json::json!([{"event_id": "e1", "hash": receipts[1].hash}])
    );
    // The receipt's hash is the hash of the stored bytes.
    let ev = l.read(&t, 1).unwrap();
    assert_eq!(to_hex(&ev.hash), receipts[1].hash);
    assert_eq!(
        to_hex(&agentrail_event::hash::sha256(&ev.bytes)),
        receipts[1].hash
    );
    assert_eq!(l.find(&t, "e2").unwrap(), Some(2));
    assert_eq!(l.find(&t, "nope").unwrap(), None);
}

#[test]
fn unknown_parents_are_dangling_links() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let t = tenant("acme");
    l.append(&t, vec![event(5, 1)]).unwrap(); // caused by e4, which does not exist
    assert_eq!(
        stored(&l, &t, 0)["caused_by"],
        serde_json::json!([{"event_id": "e4", "hash": null}])
    );
}

#[test]
fn received_at_never_goes_back_and_skew_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let l = Ledger::open(config(dir.path(), clock.clone())).unwrap();
    let t = tenant("acme");
    let r1 = l.append(&t, vec![event(0, 1)]).unwrap();
    clock.advance_ms(-10_000); // the wall clock steps back
    let r2 = l.append(&t, vec![event(1, 1)]).unwrap();
    assert_eq!(r1[0].received_at, "2026-11-25T12:00:00.000000000Z");
    assert_eq!(r2[0].received_at, r1[0].received_at);
    // occurred_at is 12:00:00; two minutes later the skew bound (60 s) is exceeded.
    clock.advance_ms(130_000);
    l.append(&t, vec![event(2, 1)]).unwrap();
    assert_eq!(stored(&l, &t, 2)["clock_skew_ms"], 120_000);
    assert!(stored(&l, &t, 1).get("clock_skew_ms").is_none());
}

#[test]
fn replays_return_the_original_receipt_and_conflicts_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let t = tenant("acme");
    let first = l.append(&t, vec![event(0, 1), event(1, 1)]).unwrap();
    let again = l.append(&t, vec![event(1, 1)]).unwrap();
    assert_eq!(again[0].seq, first[1].seq);
    assert_eq!(again[0].hash, first[1].hash);
    assert_eq!(again[0].received_at, first[1].received_at);
    assert!(again[0].replayed);
    assert_eq!(l.size(&t).unwrap(), 2);

    // Same id, other content: a conflict, and the new event before it is not written either.
    let other =
        validate_bytes(br#"{"schema_version":"1","event_id":"e1","event_type":"custom.other"}"#)
            .unwrap();
    let err = l.append(&t, vec![event(2, 1), other]).unwrap_err();
    assert!(
        matches!(&err, AppendError::Conflict { index: 1, event_id, seq: 1 } if event_id == "e1"),
        "{err}"
    );
    assert_eq!(l.size(&t).unwrap(), 2);
    assert_eq!(l.find(&t, "e2").unwrap(), None);

    // A duplicate inside one batch is a replay of the earlier one.
    let r = l.append(&t, vec![event(2, 1), event(2, 1)]).unwrap();
    assert_eq!(r[0].seq, r[1].seq);
    assert!(r[1].replayed);
    assert_eq!(l.size(&t).unwrap(), 3);
}

#[test]
fn content_digests_decide_replays_when_both_sides_have_one() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let t = tenant("acme");
    let with = |ev, d: &str| (ev, Some(d.to_owned()));
    let first = l
        .append_digested(&t, vec![with(event(0, 1), "d0"), with(event(1, 1), "d1")])
        .unwrap();
    assert_eq!(stored(&l, &t, 0)["content_digest"], "d0");
    // The digest is a server field: stripped from what the emitter sent.
    let bytes = l.read(&t, 0).unwrap().bytes;
    let submitted = agentrail_ledger::stored::submitted_content_of_stored(&bytes).unwrap();
    assert!(
        !String::from_utf8(submitted)
            .unwrap()
            .contains("content_digest")
    );

    // Other stored bytes (as after sealing with a rotated key), same digest: a replay.
    let resealed =
        validate_bytes(br#"{"schema_version":"1","event_id":"e1","event_type":"custom.resealed"}"#)
            .unwrap();
    let again = l.append_digested(&t, vec![with(resealed, "d1")]).unwrap();
    assert!(again[0].replayed);
    assert_eq!(
        (again[0].seq, &again[0].hash),
        (first[1].seq, &first[1].hash)
    );
    // Same bytes, another digest: different submitted content, a conflict.
    let err = l
        .append_digested(&t, vec![with(event(1, 1), "other")])
        .unwrap_err();
    assert!(matches!(err, AppendError::Conflict { seq: 1, .. }), "{err}");
    // Within one batch too.
    let err = l
        .append_digested(&t, vec![with(event(2, 1), "a"), with(event(2, 1), "b")])
        .unwrap_err();
    assert!(
        matches!(err, AppendError::Conflict { index: 1, .. }),
        "{err}"
    );
    assert_eq!(l.size(&t).unwrap(), 2);

    // The read-only check a caller makes before sealing.
    let probes = l
        .replays(&t, &[("e1", "d1"), ("e9", "d9"), ("e0", "d0")])
        .unwrap();
    let seqs = |probes: &[Held]| -> Vec<Option<u64>> {
        probes
            .iter()
            .map(|h| match h {
                Held::Replay(r) => Some(r.seq),
                Held::Absent => None,
                Held::Undigested { .. } => panic!("stored with a digest: {h:?}"),
            })
            .collect()
    };
    assert_eq!(seqs(&probes), vec![Some(1), None, Some(0)]);
    let err = l.replays(&t, &[("e9", "d9"), ("e1", "x")]).unwrap_err();
    assert!(
        matches!(&err, AppendError::Conflict { index: 1, seq: 1, event_id } if event_id == "e1"),
        "{err}"
    );
    // Stored without a digest: its bytes, for the caller to compare; unknown tenant: nothing.
    l.append(&t, vec![event(3, 1)]).unwrap();
    match &l.replays(&t, &[("e3", "d3")]).unwrap()[0] {
        Held::Undigested { receipt, stored } => {
            assert_eq!((receipt.seq, receipt.replayed), (2, true));
            assert_eq!(stored, &l.read(&t, 2).unwrap().bytes);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        l.replays(&tenant("globex"), &[("e1", "d1")]).unwrap(),
        vec![Held::Absent]
    );
    assert!(!l.exists(&tenant("globex")));
    // A digested re-send of an event stored without one falls back to its content.
    assert!(
        l.append_digested(&t, vec![with(event(3, 1), "d3")])
            .unwrap()[0]
            .replayed
    );
}

#[test]
fn submitted_bytes_are_the_submitted_content_of_the_prepared_event() {
    let t = tenant("acme");
    let clock = clock();
    for body in [
        r#"{"schema_version":"1","event_id":"x","event_type":"custom.a","caused_by":["p","q"],"payload":{"z":1,"a":"é"}}"#,
        r#"{"schema_version":"1","event_id":"x","event_type":"custom.a","tenant_id":"acme"}"#,
    ] {
        let ev = validate_bytes(body.as_bytes()).unwrap();
        let direct = agentrail_ledger::stored::submitted_bytes(&ev, &t).unwrap();
        let p = agentrail_ledger::stored::prepare(ev, &t, clock.as_ref()).unwrap();
        assert_eq!(direct, agentrail_ledger::stored::submitted_content(&p));
    }
}

#[test]
fn events_for_another_tenant_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let ev =
        validate_bytes(br#"{"schema_version":"1","event_type":"custom.x","tenant_id":"globex"}"#)
            .unwrap();
    let err = l.append(&tenant("acme"), vec![ev]).unwrap_err();
    assert!(err.to_string().contains("tenant_id \"globex\""), "{err}");
    assert!(!l.exists(&tenant("acme")));
}

#[test]
fn tenants_are_separate_logs() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let (a, b) = (tenant("acme"), tenant("globex"));
    l.append(&a, vec![event(0, 1), event(1, 1)]).unwrap();
    let rb = l.append(&b, vec![event(0, 1)]).unwrap();
    // Same event id in another tenant: not a replay, its own seq 0.
    assert_eq!(rb[0].seq, 0);
    assert!(!rb[0].replayed);
    assert_eq!(stored(&l, &b, 0)["tenant_id"], "globex");
    assert_ne!(l.root_at(&a, 1).unwrap(), l.root_at(&b, 1).unwrap());
    assert!(matches!(
        l.read(&tenant("initech"), 0),
        Err(ReadError::Open(_))
    ));
}

#[test]
fn reopen_keeps_everything_and_close_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("acme");
    let receipts = {
        let l = open(dir.path());
        let r = l
            .append(&t, (0..50).map(|n| event(n, n % 3)).collect())
            .unwrap();
        l.close().unwrap();
        r
    };
    let l = open(dir.path());
    assert_eq!(l.size(&t).unwrap(), 50);
    let cp = l.latest_checkpoint(&t).unwrap().unwrap();
    assert_eq!(cp.size, 50);
    assert_eq!(cp.root, l.root_at(&t, 50).unwrap());
    assert!(cp.text.starts_with("agentrail.local/tenants/acme\n50\n"));
    for r in &receipts {
        assert_eq!(to_hex(&l.read(&t, r.seq).unwrap().hash), r.hash);
    }
    // Sequencing state survives: the next event chains onto the last and its session.
    let r = l.append(&t, vec![event(50, 2)]).unwrap();
    let h = StoredHeader::parse(&l.read(&t, 50).unwrap().bytes).unwrap();
    assert_eq!(h.prev_hash.as_deref(), Some(receipts[49].hash.as_str()));
    assert_eq!(h.session_seq, Some(16)); // session s2 held 16 events (n % 3 == 2)
    assert_eq!(r[0].seq, 50);
    // Replays are still recognized after reopen.
    assert!(l.append(&t, vec![event(3, 0)]).unwrap()[0].replayed);
    drop(l);
    let report = assert_verifies(dir.path(), &t);
    assert_eq!(report.events, 51);
    assert_eq!(report.checkpoints, 2);
}

#[test]
fn segments_roll_over_and_sealed_ones_are_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("acme");
    let cfg = small_segments(dir.path());
    let l = Ledger::open(cfg.clone()).unwrap();
    for chunk in 0..10u64 {
        l.append(
            &t,
            (0..8)
                .map(|n| sized_event("e", chunk * 8 + n, 700))
                .collect(),
        )
        .unwrap();
    }
    let segs: Vec<_> = std::fs::read_dir(dir.path().join("tenants/acme/ledger"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .collect();
    assert!(segs.len() >= 7, "{} segments", segs.len());
    let read_only = segs
        .iter()
        .filter(|e| e.metadata().unwrap().permissions().readonly())
        .count();
    assert_eq!(read_only, segs.len() - 1);
    for seq in 0..80 {
        l.read(&t, seq).unwrap();
    }
    l.close().unwrap();
    drop(l);
    let l = Ledger::open(cfg).unwrap();
    assert_eq!(l.size(&t).unwrap(), 80);
    l.append(&t, vec![sized_event("e", 80, 700)]).unwrap();
    drop(l);
    let r = assert_verifies(dir.path(), &t);
    assert_eq!(r.events, 81);
    assert_eq!(r.segments, segs.len());
}

#[test]
fn many_tenants_with_a_bounded_number_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), clock());
    cfg.max_open_tenants = 8;
    let l = Ledger::open(cfg).unwrap();
    for round in 0..3u64 {
        for i in 0..60 {
            let t = tenant(&format!("t{i}"));
            l.append(&t, vec![event(round, 1)]).unwrap();
            assert!(l.open_tenants() <= 8);
        }
    }
    for i in 0..60 {
        let t = tenant(&format!("t{i}"));
        assert_eq!(l.size(&t).unwrap(), 3);
    }
    assert_eq!(l.tenants().unwrap().len(), 60);
    drop(l);
    for i in [0, 31, 59] {
        assert_verifies(dir.path(), &tenant(&format!("t{i}")));
    }
}

#[test]
fn a_failed_fsync_poisons_the_tenant_until_it_heals() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("acme");
    let other = tenant("globex");
    let fail = Arc::new(AtomicBool::new(false));
    let mut cfg = config(dir.path(), clock());
    cfg.heal_after = std::time::Duration::from_millis(300);
    let f = fail.clone();
    cfg.fsync_hook = Some(Arc::new(move |path: &std::path::Path| {
        if f.load(Ordering::SeqCst) && path.to_string_lossy().contains("/acme/") {
            Err(std::io::Error::other("injected EIO"))
        } else {
            Ok(())
        }
    }));
    let l = Ledger::open(cfg).unwrap();
    l.append(&t, vec![event(0, 1)]).unwrap();
    l.append(&other, vec![event(0, 1)]).unwrap();
    fail.store(true, Ordering::SeqCst);
    let err = l.append(&t, vec![event(1, 1), event(2, 1)]).unwrap_err();
    assert!(err.to_string().contains("injected EIO"), "{err}");
    // The disk recovers, but within the back-off the writer stays poisoned: no retrying an
    // fsync and carrying on with the same file state.
    fail.store(false, Ordering::SeqCst);
    let err = l.append(&t, vec![event(1, 1)]).unwrap_err();
    assert!(matches!(err, AppendError::Poisoned { .. }), "{err}");
    assert_eq!(l.poisoned_tenants().len(), 1);
    // Another tenant is not affected.
    l.append(&other, vec![event(1, 1)]).unwrap();
    // The unacknowledged batch is not visible to readers.
    assert_eq!(l.size(&t).unwrap(), 1);
    // After the back-off the next request cuts the files back to the last durable batch and
    // reopens the tenant, without a restart; the refused batch was dropped whole.
    std::thread::sleep(std::time::Duration::from_millis(350));
    let r = l.append(&t, vec![event(1, 1), event(2, 1)]).unwrap();
    assert_eq!(
        r.iter().map(|r| (r.seq, r.replayed)).collect::<Vec<_>>(),
        [(1, false), (2, false)]
    );
    assert!(l.poisoned_tenants().is_empty());
    assert!(l.recoveries() >= 1);
    let notes = l.take_recovery_notes();
    assert!(
        notes.iter().any(|n| n.contains("healed a write failure")),
        "{notes:?}"
    );
    drop(l);
    let report = assert_verifies(dir.path(), &t);
    assert_eq!(report.events, 3);
}

#[test]
fn an_unfinished_batch_is_dropped_whole_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("acme");
    let l = open(dir.path());
    l.append(&t, (0..3).map(|n| event(n, 1)).collect()).unwrap();
    l.checkpoint(&t).unwrap();
    l.append(&t, (3..7).map(|n| event(n, 1)).collect()).unwrap();
    // A crash while the second batch was reaching the disk: its last record never arrived.
    let crashed = tempfile::tempdir().unwrap();
    copy_tree(dir.path(), crashed.path());
    drop(l);
    let seg = crashed
        .path()
        .join("tenants/acme/ledger/00000000000000000000.seg");
    let bytes = std::fs::read(&seg).unwrap();
    let mut at = agentrail_ledger::frame::HEADER_LEN;
    let mut starts = Vec::new();
    while let agentrail_ledger::frame::RecordRead::Record { next, .. } =
        agentrail_ledger::frame::read_record(&bytes, at, 0)
    {
        starts.push(at);
        at = next;
    }
    assert_eq!(starts.len(), 7);
    std::fs::write(&seg, &bytes[..starts[6]]).unwrap();
    let r = verify(crashed.path(), &t);
    assert!(r.failure.is_none(), "{:?}", r.failure);
    assert!(
        r.notes.iter().any(|n| n.contains("unfinished batch")),
        "{:?}",
        r.notes
    );
    let l = open(crashed.path());
    assert_eq!(
        l.size(&t).unwrap(),
        3,
        "none of the unfinished batch survives"
    );
    let notes = l.take_recovery_notes();
    assert!(notes.iter().any(|n| n.contains("seqs 3..=5")), "{notes:?}");
    // The batch sent again gets the same seqs, contiguous.
    let r = l.append(&t, (3..7).map(|n| event(n, 1)).collect()).unwrap();
    assert_eq!(r.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 4, 5, 6]);
    drop(l);
    assert_eq!(assert_verifies(crashed.path(), &t).events, 7);
}

#[test]
fn a_batch_never_spans_two_segments() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("acme");
    let l = Ledger::open(small_segments(dir.path())).unwrap();
    for chunk in 0..6u64 {
        l.append(
            &t,
            (0..5)
                .map(|n| sized_event("e", chunk * 5 + n, 700))
                .collect(),
        )
        .unwrap();
    }
    // One batch larger than a segment gets a segment of its own.
    l.append(&t, (30..45).map(|n| sized_event("e", n, 700)).collect())
        .unwrap();
    drop(l);
    let mut firsts: Vec<u64> = std::fs::read_dir(dir.path().join("tenants/acme/ledger"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".seg").map(|n| n.parse().unwrap())
        })
        .collect();
    firsts.sort();
    assert!(firsts.len() >= 3, "{firsts:?}");
    for f in &firsts {
        assert_eq!(f % 5, 0, "a segment starts inside a batch: {firsts:?}");
    }
    assert!(firsts.contains(&30));
    assert_eq!(assert_verifies(dir.path(), &t).events, 45);
}

/// A ledger config whose segments are sealed at 8 KiB.
fn small_segments(dir: &std::path::Path) -> agentrail_ledger::Config {
    let mut cfg = config(dir, clock());
    cfg.segment_size = 8192;
    cfg
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

#[test]
fn a_data_dir_is_opened_by_one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let _l = open(dir.path());
    let err = Ledger::open(config(dir.path(), clock())).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
}

#[test]
fn concurrent_appenders_share_fsyncs_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("acme");
    let syncs = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut cfg = config(dir.path(), clock());
    let s = syncs.clone();
    cfg.fsync_hook = Some(Arc::new(move |_p: &std::path::Path| {
        s.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }));
    let l = Arc::new(Ledger::open(cfg).unwrap());
    let threads: Vec<_> = (0..8u64)
        .map(|w| {
            let l = l.clone();
            let t = t.clone();
            std::thread::spawn(move || {
                let mut seqs = Vec::new();
                for i in 0..50u64 {
                    let r = l
                        .append(&t, vec![sized_event(&format!("w{w}-"), i, 400)])
                        .unwrap();
                    seqs.push(r[0].seq);
                }
                seqs
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..400).collect::<Vec<_>>());
    // Every acknowledged append went through an fsync (how many are shared depends on timing;
    // the benchmark measures it).
    assert!(syncs.load(Ordering::Relaxed) > 0);
    l.close().unwrap();
    drop(l);
    assert_verifies(dir.path(), &t);
}

/// Regression: a first start killed after writing the signing key but before its verifier key
/// left `system/log.vkey` missing for good, and offline verification could not run (seen in the
/// SIGKILL crash test on a loaded machine). The verifier key is derived, so a start writes it.
#[test]
fn a_missing_verifier_key_is_written_again_from_the_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let vkey = agentrail_ledger::DataDir::new(dir.path())
        .system()
        .log_vkey();
    let before = {
        let l = open(dir.path());
        l.verifier().to_string()
    };
    std::fs::remove_file(&vkey).unwrap();
    assert!(agentrail_ledger::read_verifier(dir.path()).is_err());
    drop(open(dir.path()));
    let after = agentrail_ledger::read_verifier(dir.path()).unwrap();
    assert_eq!(after.to_string(), before);
}
