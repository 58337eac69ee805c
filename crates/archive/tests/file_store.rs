//! The conformance suite on the file store, and what is particular to it: read-only files,
//! concurrent writers of one key, and no temporary file left behind.

mod common;

use agentrail_archive::{ArchiveStore, FileArchive, Put};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

#[test]
fn the_file_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileArchive::new(dir.path().join("archive"));
    common::conformance(&store, "run-1", false);
    let mode = std::fs::metadata(dir.path().join("archive/run-1/acme/2026/12/07/seg-0"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o444);
}

#[test]
fn concurrent_writers_of_one_key_leave_one_object() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FileArchive::new(dir.path()));
    let handles: Vec<_> = (0..8u8)
        .map(|i| {
            let store = store.clone();
            // Half write the same bytes, half others: exactly one object stays, and every
            // writer is told whether it holds its bytes.
            std::thread::spawn(move || {
                let bytes = vec![i % 2; 4096];
                (i % 2, store.put_once("t/k", &bytes, None))
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let stored = store.get("t/k").unwrap().unwrap();
    let winner = stored[0];
    let written = results
        .iter()
        .filter(|(_, r)| matches!(r, Ok(Put::Written)))
        .count();
    assert_eq!(written, 1);
    for (b, r) in &results {
        assert_eq!(*b == winner, r.is_ok(), "{b}: {r:?}");
    }
    let names: Vec<_> = std::fs::read_dir(dir.path().join("t"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["k".to_owned()], "no temporary file is left");
}

#[test]
fn a_file_url_is_an_absolute_path() {
    assert!(FileArchive::from_url("file:///var/archive").is_ok());
    assert!(FileArchive::from_url("file://relative").is_err());
    assert!(FileArchive::from_url("s3://bucket").is_err());
    assert_eq!(
        FileArchive::from_url("file:///var/archive").unwrap().url(),
        "file:///var/archive"
    );
}
