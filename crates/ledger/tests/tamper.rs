//! Tampering with any stored file is detected (by opening the tenant or by `verify`) and located;
//! a torn tail left by an interrupted append is not reported as tampering.

mod common;

use agentrail_event::TenantId;
use agentrail_ledger::frame::{HEADER_LEN, RECORD_HEADER_LEN};
use agentrail_ledger::{Config, Ledger};
use agentrail_testkit::copy_dir;
use common::*;
use std::fs;
use std::path::{Path, PathBuf};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn cfg(dir: &Path) -> Config {
    let mut c = config(dir, clock());
    c.segment_size = 4096;
    c
}

/// A cleanly closed ledger: two tenants, several sealed segments, several checkpoints.
fn template() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(cfg(dir.path())).unwrap();
    for t in ["acme", "globex"] {
        let t = tenant(t);
        for batch in 0..6u64 {
            l.append(&t, (0..5).map(|i| event(batch * 5 + i, i % 2)).collect())
                .unwrap();
            l.checkpoint(&t).unwrap();
        }
    }
    l.close().unwrap();
    dir
}

/// What an untouched copy holds: every event of `t` and its root at 30.
fn reference(
    dir: &Path,
    t: &TenantId,
) -> (Vec<agentrail_ledger::StoredEvent>, agentrail_merkle::Hash) {
    let l = Ledger::open(cfg(dir)).unwrap();
    (
        l.read_range(t, 0, usize::MAX).unwrap(),
        l.root_at(t, 30).unwrap(),
    )
}

/// The files that hold audit data: segments and the checkpoint log.
fn tenant_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.join("tenants/acme/checkpoints/log")];
    out.extend(segments(dir));
    out
}

/// The derived files, rebuilt from the segments.
fn derived_files(dir: &Path) -> Vec<PathBuf> {
    let base = dir.join("tenants/acme/ledger");
    vec![base.join("entries"), base.join("tree")]
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = fs::read_dir(dir.join("tenants/acme/ledger"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs
}

/// Opens the tenant and verifies it; returns the first complaint, if any.
fn detect(dir: &Path, t: &TenantId) -> Option<String> {
    let opened = Ledger::open(cfg(dir))
        .map_err(|e| e.to_string())
        .and_then(|l| l.size(t).map_err(|e| e.to_string()).map(|_| ()));
    // Verify what is on disk as tampered (opening may have truncated nothing: damage refuses).
    let report = verify(dir, t);
    match (opened, report.failure) {
        (Err(e), _) => Some(e),
        (Ok(()), Some(d)) => Some(d.to_string()),
        (Ok(()), None) => None,
    }
}

/// Record offsets of a segment, from its framing.
fn record_offsets(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = HEADER_LEN;
    while pos + RECORD_HEADER_LEN <= bytes.len() {
        let word = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap());
        let len = (word & !agentrail_ledger::frame::MORE_IN_BATCH) as usize;
        out.push((pos, RECORD_HEADER_LEN + len));
        pos += RECORD_HEADER_LEN + len;
    }
    out
}

#[test]
fn the_untouched_template_verifies() {
    let tpl = template();
    assert_eq!(detect(tpl.path(), &tenant("acme")), None);
    assert!(segments(tpl.path()).len() >= 3);
}

#[test]
fn every_flipped_byte_is_detected_and_located() {
    let tpl = template();
    let trials: u64 = std::env::var("AGENTRAIL_TAMPER_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let t = tenant("acme");
    for trial in 0..trials {
        let work = tempfile::tempdir().unwrap();
        copy_dir(tpl.path(), work.path());
        let files = tenant_files(work.path());
        let file = &files[rng.below(files.len() as u64) as usize];
        let mut bytes = fs::read(file).unwrap();
        let at = rng.below(bytes.len() as u64) as usize;
        let mask = (rng.below(255) + 1) as u8;
        bytes[at] ^= mask;
        fs::write(file, &bytes).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        match detect(work.path(), &t) {
            None => {
                panic!("trial {trial}: flipping byte {at} of {name} (^{mask:#04x}) went unnoticed")
            }
            Some(msg) => assert!(
                msg.contains("tenant acme"),
                "trial {trial}: {name}@{at}: the complaint does not name the tenant: {msg}"
            ),
        }
    }
}

#[test]
fn flipped_bytes_in_derived_files_are_detected_or_rebuilt() {
    let tpl = template();
    let t = tenant("acme");
    let (events, root) = reference(tpl.path(), &t);
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for trial in 0..100 {
        let work = tempfile::tempdir().unwrap();
        copy_dir(tpl.path(), work.path());
        let files = derived_files(work.path());
        let file = &files[rng.below(2) as usize];
        let mut bytes = fs::read(file).unwrap();
        let at = rng.below(bytes.len() as u64) as usize;
        bytes[at] ^= (rng.below(255) + 1) as u8;
        fs::write(file, &bytes).unwrap();
        if detect(work.path(), &t).is_some() {
            continue;
        }
        // Not reported: then it was in the active segment's range and the open rebuilt it.
        let l = Ledger::open(cfg(work.path())).unwrap();
        assert_eq!(
            l.read_range(&t, 0, usize::MAX).unwrap(),
            events,
            "trial {trial}"
        );
        assert_eq!(l.root_at(&t, 30).unwrap(), root, "trial {trial}");
        drop(l);
        assert_verifies(work.path(), &t);
    }
}

#[test]
fn deleting_swapping_and_truncating_records_are_detected() {
    let tpl = template();
    let t = tenant("acme");
    let segs = segments(tpl.path());
    for (si, _) in segs.iter().enumerate() {
        // Delete one record.
        let work = tempfile::tempdir().unwrap();
        copy_dir(tpl.path(), work.path());
        let seg = &segments(work.path())[si];
        let bytes = fs::read(seg).unwrap();
        let recs = record_offsets(&bytes);
        let (o, l) = recs[recs.len() / 2];
        let mut cut = bytes[..o].to_vec();
        cut.extend_from_slice(&bytes[o + l..]);
        fs::write(seg, &cut).unwrap();
        let msg = detect(work.path(), &t).expect("a deleted record went unnoticed");
        assert!(msg.contains(".seg") || msg.contains("checkpoint"), "{msg}");

        // Swap two records.
        if recs.len() >= 2 {
            let work = tempfile::tempdir().unwrap();
            copy_dir(tpl.path(), work.path());
            let seg = &segments(work.path())[si];
            let (o1, l1) = recs[0];
            let (o2, l2) = recs[1];
            let mut swapped = bytes[..o1].to_vec();
            swapped.extend_from_slice(&bytes[o2..o2 + l2]);
            swapped.extend_from_slice(&bytes[o1..o1 + l1]);
            swapped.extend_from_slice(&bytes[o2 + l2..]);
            fs::write(seg, &swapped).unwrap();
            let msg = detect(work.path(), &t).expect("swapped records went unnoticed");
            assert!(msg.contains("seq"), "{msg}");
        }

        // Truncate in the middle of the segment (on a record boundary and off it).
        for at in [recs[recs.len() / 2].0, recs[recs.len() / 2].0 + 7] {
            let work = tempfile::tempdir().unwrap();
            copy_dir(tpl.path(), work.path());
            let seg = &segments(work.path())[si];
            fs::OpenOptions::new()
                .write(true)
                .open(seg)
                .unwrap()
                .set_len(at as u64)
                .unwrap();
            let msg = detect(work.path(), &t).expect("a truncated segment went unnoticed");
            assert!(msg.contains("tenant acme"), "{msg}");
        }
    }
}

#[test]
fn missing_or_foreign_files_are_detected() {
    let tpl = template();
    let t = tenant("acme");
    // A missing segment in the middle.
    let work = tempfile::tempdir().unwrap();
    copy_dir(tpl.path(), work.path());
    fs::remove_file(&segments(work.path())[1]).unwrap();
    let msg = detect(work.path(), &t).expect("a missing segment went unnoticed");
    assert!(msg.contains(".seg"), "{msg}");
    // Another tenant's first segment in place of ours.
    let work = tempfile::tempdir().unwrap();
    copy_dir(tpl.path(), work.path());
    let ours = &segments(work.path())[0];
    let theirs = work
        .path()
        .join("tenants/globex/ledger")
        .join(ours.file_name().unwrap());
    fs::copy(&theirs, ours).unwrap();
    let msg = detect(work.path(), &t).expect("a foreign segment went unnoticed");
    assert!(msg.contains("tenant acme"), "{msg}");
    // The checkpoint log removed: the ledger cannot be opened, and verify says why.
    let work = tempfile::tempdir().unwrap();
    copy_dir(tpl.path(), work.path());
    fs::remove_file(work.path().join("tenants/acme/checkpoints/log")).unwrap();
    assert!(detect(work.path(), &t).is_some());
}

#[test]
fn a_torn_tail_is_truncated_not_reported() {
    let tpl = template();
    let t = tenant("acme");
    let work = tempfile::tempdir().unwrap();
    copy_dir(tpl.path(), work.path());
    let last = segments(work.path()).pop().unwrap();
    let before = fs::read(&last).unwrap();
    let recs = record_offsets(&before);
    let (o, l) = *recs.last().unwrap();
    // An interrupted append: the first part of a record (here: a copy of the last one, so the
    // bytes look real) written after the end.
    for keep in [3, RECORD_HEADER_LEN, l / 2, l - 1] {
        let mut torn = before.clone();
        torn.extend_from_slice(&before[o..o + keep]);
        fs::write(&last, &torn).unwrap();
        let r = verify(work.path(), &t);
        assert!(
            r.failure.is_none(),
            "torn tail reported as damage: {:?}",
            r.failure
        );
        assert!(
            r.notes.iter().any(|n| n.contains("torn tail")),
            "{:?}",
            r.notes
        );
        let l2 = Ledger::open(cfg(work.path())).unwrap();
        assert_eq!(l2.size(&t).unwrap(), 30);
        let notes = l2.take_recovery_notes();
        assert!(
            notes.iter().any(|n| n.contains("truncated a torn tail")),
            "{notes:?}"
        );
        drop(l2);
        assert_eq!(fs::read(&last).unwrap(), before);
    }
    // Allocated but never written space (zeros) at the end: also a torn tail.
    let mut zeros = before.clone();
    zeros.extend_from_slice(&vec![0u8; 4096]);
    fs::write(&last, &zeros).unwrap();
    assert_eq!(detect(work.path(), &t), None);
    assert_verifies(work.path(), &t);
}

#[test]
fn damaged_or_missing_derived_files_are_rebuilt_from_the_segments() {
    let tpl = template();
    let t = tenant("acme");
    let (events, root) = reference(tpl.path(), &t);
    type Harm = fn(&Path);
    let harms: [(&str, Harm); 4] = [
        ("entries of a sealed segment overwritten", |d| {
            let p = d.join("tenants/acme/ledger/entries");
            let mut b = fs::read(&p).unwrap();
            b[40..200].fill(0x5A);
            fs::write(&p, b).unwrap();
        }),
        ("tree truncated", |d| {
            let p = d.join("tenants/acme/ledger/tree");
            fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .unwrap()
                .set_len(100)
                .unwrap();
        }),
        ("tree overwritten", |d| {
            let p = d.join("tenants/acme/ledger/tree");
            let mut b = fs::read(&p).unwrap();
            let n = b.len();
            b[32..n].fill(0x11);
            fs::write(&p, b).unwrap();
        }),
        ("entries emptied", |d| {
            let p = d.join("tenants/acme/ledger/entries");
            fs::write(&p, b"").unwrap();
        }),
    ];
    for (what, harm) in harms {
        let work = tempfile::tempdir().unwrap();
        copy_dir(tpl.path(), work.path());
        harm(work.path());
        let l = Ledger::open(cfg(work.path())).unwrap();
        assert_eq!(l.read_range(&t, 0, usize::MAX).unwrap(), events, "{what}");
        assert_eq!(l.root_at(&t, 30).unwrap(), root, "{what}");
        let notes = l.take_recovery_notes();
        assert!(
            notes
                .iter()
                .any(|n| n.contains("rebuilt the entries and tree")),
            "{what}: {notes:?}"
        );
        l.append(&t, vec![event(30, 0)]).unwrap();
        drop(l);
        assert_verifies(work.path(), &t);
    }
    // A rebuild never accepts a record the latest checkpoint covers that was changed: the
    // rebuilt tree is checked against it.
    let work = tempfile::tempdir().unwrap();
    copy_dir(tpl.path(), work.path());
    let seg = segments(work.path())[0].clone();
    let mut b = fs::read(&seg).unwrap();
    let recs = record_offsets(&b);
    let (o, l) = recs[1];
    let i = o + 20 + (l - 20) / 2;
    b[i] = if b[i] == b'a' { b'b' } else { b'a' };
    // Re-frame the record so its checksums hold (an insider's edit), and damage the entries
    // so the open rebuilds.
    let payload = b[o + 20..o + l].to_vec();
    let mut framed = Vec::new();
    let seq = u64::from_le_bytes(b[o + 4..o + 12].try_into().unwrap());
    agentrail_ledger::frame::encode_record(seq, &payload, false, &mut framed);
    b[o..o + l].copy_from_slice(&framed);
    fs::write(&seg, &b).unwrap();
    fs::write(work.path().join("tenants/acme/ledger/entries"), b"").unwrap();
    let err = Ledger::open(cfg(work.path()))
        .unwrap()
        .size(&t)
        .expect_err("an altered record must not be accepted by a rebuild");
    assert!(err.to_string().contains("tenant acme"), "{err}");
}
