//! One conformance suite for the log's signers ([`agentrail_ledger::signer::LogSigner`]): the
//! key file in the process (the embedded default) and a `SignerService` behind a real Unix
//! socket (what `agentrail signer` runs). Both must produce the same kinds of signatures,
//! verifiable with the data directory's verifier key; the external one must also refuse,
//! from its own durable record, any tree inconsistent with one it signed.

mod common;

use agentrail_ledger::signer::{KeyFile, SignerService};
use agentrail_ledger::{Ledger, read_verifier};
use agentrail_note::{Signer, Verifier, open_checkpoint};
use common::*;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A signer service on a socket in `dir`, serving from a thread; its socket path.
fn serve_signer(dir: &Path, key: &Signer) -> PathBuf {
    let socket = dir.join(format!("signer-{}.sock", rand_suffix()));
    let service = Arc::new(
        SignerService::open(
            Box::new(KeyFile::new(key.clone())),
            &dir.join("signed.jsonl"),
        )
        .unwrap(),
    );
    let listener = UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || service.serve(listener));
    socket
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn key() -> Signer {
    Signer::from_seed("agentrail.local", [7; 32]).unwrap()
}

/// What every signer must do for the ledger, checked against the directory's verifier key.
fn conformance(data: &Path, signer: Option<PathBuf>, expect: Option<Verifier>) {
    let mut cfg = config(data, clock());
    cfg.signer = signer;
    let l = Ledger::open(cfg).unwrap();
    let t = tenant("acme");
    let vkey = read_verifier(data).unwrap();
    let expect = expect.unwrap_or_else(|| key().verifier());
    assert_eq!(vkey.to_string(), expect.to_string());
    let mut sizes = Vec::new();
    for round in 0..4u64 {
        l.append(
            &t,
            (round * 5..round * 5 + 5).map(|n| event(n, 1)).collect(),
        )
        .unwrap();
        // A receipt's checkpoint, then the logged one, of the same tree.
        let r = l.receipt_checkpoint(&t, round * 5 + 5).unwrap();
        let (c, _) = open_checkpoint(r.text.as_bytes(), &vkey, &[]).unwrap();
        assert_eq!((c.size, c.root), (r.size, r.root));
        let cp = l.checkpoint(&t).unwrap();
        open_checkpoint(cp.text.as_bytes(), &vkey, &[]).unwrap();
        assert_eq!(cp.root, r.root);
        sizes.push(cp.size);
    }
    assert_eq!(sizes, [5, 10, 15, 20]);
    // An older size of the same tree is still signable (consistent with the newest).
    let old = l.receipt_checkpoint(&t, 3).unwrap();
    assert!(old.size >= 3);
    // Statements: signed, and never in a checkpoint's shape.
    let note = l.sign_statement(&t, "export", &["a b".into()]).unwrap();
    let (n, _) = agentrail_note::open(note.as_bytes(), &[&vkey]).unwrap();
    assert!(n.text.starts_with("agentrail.local/tenants/acme/export\n"));
    assert!(l.sign_statement(&t, "checkpoint", &["1".into()]).is_err());
    l.close().unwrap();
    drop(l);
    assert_verifies(data, &t);
}

#[test]
fn the_key_file_signs_for_the_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("system")).unwrap();
    std::fs::write(
        data.join("system/log.key"),
        format!("{}\n", key().to_private_key_string()),
    )
    .unwrap();
    conformance(&data, None, None);
}

#[test]
fn the_signer_process_signs_for_the_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = serve_signer(tmp.path(), &key());
    conformance(&tmp.path().join("data"), Some(socket), None);
    assert!(!tmp.path().join("data/system/log.key").exists());
}

#[test]
fn the_signer_refuses_a_tree_inconsistent_with_what_it_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = serve_signer(tmp.path(), &key());
    let t = tenant("acme");
    // The real history, signed at 10.
    let data = tmp.path().join("data");
    let mut cfg = config(&data, clock());
    cfg.signer = Some(socket.clone());
    let l = Ledger::open(cfg.clone()).unwrap();
    l.append(&t, (0..10).map(|n| event(n, 1)).collect())
        .unwrap();
    let signed = l.checkpoint(&t).unwrap();
    l.close().unwrap();
    drop(l);
    // Another history of the same origin (what whoever takes the data directory can write:
    // every record valid, no key needed), in place of the real one.
    let other = tmp.path().join("other");
    let mut ocfg = config(&other, clock());
    ocfg.signer = Some(socket.clone());
    let o = Ledger::open(ocfg).unwrap();
    let forged: Vec<_> = (0..12).map(|n| event(n, 2)).collect();
    o.append(&t, forged).unwrap();
    // Signing it fails: the signer holds the real tree of 10 and no proof links them.
    let e = o.checkpoint(&t).unwrap_err().to_string();
    assert!(e.contains("not consistent with the tree of size 10"), "{e}");
    let e = o.receipt_checkpoint(&t, 12).unwrap_err().to_string();
    assert!(e.contains("not consistent"), "{e}");
    // A shorter history is refused too: the signer has signed more than it holds.
    let short = tmp.path().join("short");
    let mut scfg = config(&short, clock());
    scfg.signer = Some(socket.clone());
    let s = Ledger::open(scfg).unwrap();
    s.append(&t, (0..4).map(|n| event(n, 1)).collect()).unwrap();
    let e = s.checkpoint(&t).unwrap_err().to_string();
    assert!(e.contains("its records were cut"), "{e}");
    // The real history goes on being signed, and a restarted signer remembers.
    let socket2 = serve_signer(tmp.path(), &key());
    let mut cfg2 = cfg.clone();
    cfg2.signer = Some(socket2);
    let l = Ledger::open(cfg2).unwrap();
    l.append(&t, (10..15).map(|n| event(n, 1)).collect())
        .unwrap();
    assert_eq!(l.checkpoint(&t).unwrap().size, 15);
    assert!(o.checkpoint(&t).is_err());
    assert_ne!(signed.root, [0; 32]);
}

#[test]
fn a_directory_whose_key_is_elsewhere_is_not_opened_without_its_signer() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = serve_signer(tmp.path(), &key());
    let data = tmp.path().join("data");
    let mut cfg = config(&data, clock());
    cfg.signer = Some(socket);
    drop(Ledger::open(cfg).unwrap());
    // No signer: refused, not a new key made.
    let e = Ledger::open(config(&data, clock()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("held elsewhere"), "{e}");
    assert!(!data.join("system/log.key").exists());
    // A reader may open it; it signs nothing.
    let mut cfg = config(&data, clock());
    cfg.without_signer = true;
    let l = Ledger::open(cfg).unwrap();
    l.append(&tenant("acme"), vec![event(0, 1)]).unwrap();
    let e = l.checkpoint(&tenant("acme")).unwrap_err().to_string();
    assert!(e.contains("pass --signer"), "{e}");
    drop(l);
    // A key file beside an external signer is refused: it should not be there.
    std::fs::write(
        data.join("system/log.key"),
        format!("{}\n", key().to_private_key_string()),
    )
    .unwrap();
    let mut cfg = config(&data, clock());
    cfg.signer = Some(tmp.path().join("nowhere.sock"));
    let e = Ledger::open(cfg).unwrap_err().to_string();
    assert!(e.contains("move it to the signer"), "{e}");
}

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Runs a token tool; a missing one names what to install.
fn tool(cmd: &str, args: &[&str]) -> String {
    let o = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{cmd}: {e} (install Debian's softhsm2 and opensc, as .ci/run does)")
        });
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{cmd} {args:?}: {out}");
    out
}

/// A SoftHSM2 token of its own with an Ed25519 key pair made in it; deleted when dropped.
struct Token(String);

impl Token {
    fn new() -> Token {
        let label = format!("agentrail-test-{}-{}", std::process::id(), rand_suffix());
        tool(
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                &label,
                "--so-pin",
                "1234",
                "--pin",
                "5678",
            ],
        );
        tool(
            "pkcs11-tool",
            &[
                "--module",
                SOFTHSM,
                "--token-label",
                &label,
                "--login",
                "--pin",
                "5678",
                "--keypairgen",
                "--key-type",
                "EC:edwards25519",
                "--label",
                "log-key",
            ],
        );
        Token(label)
    }

    fn uri(&self, pin: &str) -> String {
        format!(
            "pkcs11:token={};object=log-key?module-path={SOFTHSM}&pin-value={pin}",
            self.0
        )
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        let _ = std::process::Command::new("softhsm2-util")
            .args(["--delete-token", "--token", &self.0])
            .output();
    }
}

/// One test for the token: a PKCS#11 module is initialised once per process and sees the
/// tokens that existed then, so the token is made first and both uses share it.
#[test]
fn a_pkcs11_token_signs_for_the_ledger_and_for_the_signer_process() {
    let token = Token::new();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let uri = PathBuf::from(token.uri("5678"));
    // The token's public key, as the ledger derives it: the verifier the suite must find.
    let mut cfg = config(&data, clock());
    cfg.signer = Some(uri.clone());
    let vkey = Ledger::open(cfg).unwrap().verifier().clone();
    assert!(!data.join("system/log.key").exists());
    conformance(&data, Some(uri), Some(vkey.clone()));
    // A wrong PIN, an unknown key or token: refused at open, named.
    for (bad, says) in [
        (token.uri("0000"), "logging in"),
        (
            token.uri("5678").replace("object=log-key", "object=other"),
            "no Ed25519 private key",
        ),
        (
            token.uri("5678").replace(&token.0, "nope"),
            "no PKCS#11 token",
        ),
    ] {
        let mut cfg = config(&data, clock());
        cfg.signer = Some(PathBuf::from(bad));
        let e = Ledger::open(cfg).unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }
    // The token's key behind the signer process's consistency checks.
    let key = agentrail_ledger::pkcs11::Pkcs11Signer::open(&token.uri("5678"), "agentrail.local")
        .unwrap();
    assert_eq!(agentrail_ledger::signer::LogSigner::verifier(&key), &vkey);
    let socket = tmp.path().join("signer.sock");
    let service =
        Arc::new(SignerService::open(Box::new(key), &tmp.path().join("signed.jsonl")).unwrap());
    let listener = UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || service.serve(listener));
    conformance(&tmp.path().join("data2"), Some(socket), Some(vkey));
}
