//! The archive conformance suite on S3 with Object Lock, against a real S3 API server (moto's
//! server mode, started here), and that Object Lock holds through the S3 API itself: a locked
//! object version cannot be deleted, an overwrite cannot replace it, and its retention is the
//! date asked.

#[path = "../../archive/tests/common/mod.rs"]
mod common;

use agentrail_archive::{ArchiveError, ArchiveStore};
use agentrail_s3::{S3Archive, S3Config};
use agentrail_testkit::s3::Server;

fn config(server: &Server, url: &str) -> S3Config {
    S3Config {
        url: url.into(),
        endpoint: Some(server.endpoint()),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        session_token: None,
    }
}

/// A raw client of the same server, to try what the store never does.
fn raw(server: &Server) -> (tokio::runtime::Runtime, aws_sdk_s3::Client) {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .endpoint_url(server.endpoint())
        .force_path_style(true)
        .build();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (rt, aws_sdk_s3::Client::from_conf(conf))
}

#[test]
fn the_s3_store_conforms_and_object_lock_holds() {
    let server = Server::start();
    server.create_bucket("worm", true);
    let store = S3Archive::open(&config(&server, "s3://worm/agentrail")).unwrap();
    assert_eq!(store.url(), "s3://worm/agentrail");
    common::conformance(&store, "run-1", true);

    // Through the S3 API, with the store's own key: the locked version cannot be deleted …
    let (rt, s3) = raw(&server);
    let key = "agentrail/run-1/acme/2026/12/07/seg-0";
    // (S3 keeps the SHA-256 it checked on the way in, which the store's digest reads.)
    let head = rt
        .block_on(
            s3.head_object()
                .bucket("worm")
                .key(key)
                .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
                .send(),
        )
        .unwrap();
    assert!(head.checksum_sha256().is_some(), "{head:?}");
    let versions = rt
        .block_on(s3.list_object_versions().bucket("worm").prefix(key).send())
        .unwrap();
    let v = versions.versions()[0].version_id().unwrap().to_owned();
    let del = rt.block_on(
        s3.delete_object()
            .bucket("worm")
            .key(key)
            .version_id(&v)
            .bypass_governance_retention(true)
            .send(),
    );
    assert!(del.is_err(), "a COMPLIANCE-locked version was deleted");
    // … an unconditional overwrite only adds a version: the archived bytes stay readable …
    rt.block_on(
        s3.put_object()
            .bucket("worm")
            .key(key)
            .body(b"forged".to_vec().into())
            .send(),
    )
    .unwrap();
    let kept = rt
        .block_on(
            s3.get_object()
                .bucket("worm")
                .key(key)
                .version_id(&v)
                .send(),
        )
        .unwrap();
    let kept = rt.block_on(kept.body.collect()).unwrap().into_bytes();
    assert_eq!(kept.len(), 70_000);
    // … and the store reads the first version, the locked one: the forgery on top changes
    // nothing it reads, a re-upload of the archived bytes is a no-op, other bytes a conflict.
    assert_eq!(
        store.get("run-1/acme/2026/12/07/seg-0").unwrap().unwrap(),
        vec![7u8; 70_000]
    );
    assert_eq!(
        store
            .put_once("run-1/acme/2026/12/07/seg-0", &vec![7u8; 70_000], None)
            .unwrap(),
        agentrail_archive::Put::AlreadyThere
    );
    assert!(matches!(
        store.put_once("run-1/acme/2026/12/07/seg-0", b"forged", None),
        Err(ArchiveError::Conflict { .. })
    ));
    // A delete marker (which Object Lock cannot refuse) hides the key from ListObjects, not
    // from the store: it still lists it and reads the locked version.
    rt.block_on(s3.delete_object().bucket("worm").key(key).send())
        .unwrap();
    let listed = store.list("run-1/acme/").unwrap();
    assert!(
        listed
            .iter()
            .any(|o| o.key == "run-1/acme/2026/12/07/seg-0" && o.size == 70_000),
        "{listed:?}"
    );
    assert_eq!(
        store.get("run-1/acme/2026/12/07/seg-0").unwrap().unwrap(),
        vec![7u8; 70_000]
    );
    // Its retention is the locked version's, not the unlocked forgery's.
    assert!(
        store
            .retention("run-1/acme/2026/12/07/seg-0")
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_bucket_without_object_lock_is_refused() {
    let server = Server::start();
    server.create_bucket("plain", false);
    let store = S3Archive::open(&config(&server, "s3://plain")).unwrap();
    let e = store.check().unwrap_err().to_string();
    assert!(e.contains("has no Object Lock"), "{e}");
    let e = S3Archive::open(&config(&server, "file:///x"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("s3://bucket"), "{e}");
}
