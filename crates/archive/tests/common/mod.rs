//! The conformance suite every `ArchiveStore` passes (the file store here; the S3 store against
//! a real S3 API server). `prefix` keeps a run's objects apart from others in a shared store.

use agentrail_archive::{ArchiveError, ArchiveStore, Put};

pub fn conformance(store: &dyn ArchiveStore, prefix: &str, enforces_retention: bool) {
    store.check().unwrap();
    let key = |k: &str| format!("{prefix}/{k}");
    let seg = vec![7u8; 70_000];
    // A new object, then the same bytes again (a re-upload after a crash): nothing changes.
    let put_seg = || {
        store
            .put_once(
                &key("acme/2026/12/07/seg-0"),
                &seg,
                Some("2027-12-07T00:00:00Z"),
            )
            .unwrap()
    };
    assert_eq!(put_seg(), Put::Written);
    assert_eq!(put_seg(), Put::AlreadyThere);
    // Other bytes at the same key: refused, naming both digests; the stored object stays.
    let mut other = seg.clone();
    other[100] ^= 1;
    match store.put_once(&key("acme/2026/12/07/seg-0"), &other, None) {
        Err(ArchiveError::Conflict {
            key: k,
            existing,
            new,
        }) => {
            assert_eq!(k, key("acme/2026/12/07/seg-0"));
            assert_ne!(existing, new);
        }
        r => panic!("an overwrite with other bytes: {r:?}"),
    }
    assert_eq!(
        store.get(&key("acme/2026/12/07/seg-0")).unwrap().as_deref(),
        Some(&seg[..])
    );
    // Its size and digest, as the store reports them.
    assert_eq!(
        store.digest(&key("acme/2026/12/07/seg-0")).unwrap(),
        Some((70_000, agentrail_event::hash::sha256(&seg)))
    );
    assert_eq!(store.digest(&key("acme/nothing-here")).unwrap(), None);
    // Empty objects, missing ones, and keys that are not keys.
    store.put_once(&key("acme/empty"), b"", None).unwrap();
    assert_eq!(
        store.get(&key("acme/empty")).unwrap().as_deref(),
        Some(&b""[..])
    );
    assert_eq!(store.get(&key("acme/none")).unwrap(), None);
    for bad in ["../x", "a//b", ".hidden", "a b"] {
        assert!(matches!(
            store.put_once(&key(bad), b"x", None),
            Err(ArchiveError::BadKey { .. })
        ));
    }
    // Listing: by prefix, sorted, sizes; another tenant's objects are not in it.
    store
        .put_once(&key("acme/2026/12/08/seg-1"), b"one", None)
        .unwrap();
    store
        .put_once(&key("acmeco/2026/12/08/seg-0"), b"other tenant", None)
        .unwrap();
    let listed: Vec<(String, u64)> = store
        .list(&key("acme/"))
        .unwrap()
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    assert_eq!(
        listed,
        vec![
            (key("acme/2026/12/07/seg-0"), 70_000),
            (key("acme/2026/12/08/seg-1"), 3),
            (key("acme/empty"), 0),
        ]
    );
    assert_eq!(store.list(&key("acme/2026/12/08/")).unwrap().len(), 1);
    assert!(store.list(&key("nobody/")).unwrap().is_empty());
    // Retention: what was asked, where the store enforces it.
    let r = store.retention(&key("acme/2026/12/07/seg-0")).unwrap();
    if enforces_retention {
        assert!(
            r.as_deref()
                .is_some_and(|r| r.starts_with("2027-12-07T00:00:00")),
            "{r:?}"
        );
    } else {
        assert_eq!(r, None);
    }
}
