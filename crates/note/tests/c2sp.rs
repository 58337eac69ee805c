//! C2SP vectors (https://c2sp.org/signed-note, https://c2sp.org/tlog-checkpoint,
//! https://c2sp.org/tlog-cosignature, https://c2sp.org/tlog-proof) and malformed-note rejection.
//! The examples in the repository's `testdata/c2sp` are generated independently of this crate,
//! by `testdata/c2sp/gen_c2sp_examples.py` with Python's `cryptography`, from the seeds below.

use agentrail_note::{
    Checkpoint, CheckpointError, Cosigner, Note, NoteError, Signer, Verifier, open, open_checkpoint,
};

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/c2sp/checkpoint_example.txt"
);

fn seed(hex_str: &str) -> [u8; 32] {
    hex::decode(hex_str).unwrap().try_into().unwrap()
}

fn log_signer() -> Signer {
    Signer::from_seed("example.com/audit/tenant-a", seed(LOG_SEED)).unwrap()
}

fn witness() -> Cosigner {
    Cosigner::from_seed("witness.example/w1", seed(WITNESS_SEED)).unwrap()
}

const EXTENSION_EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/c2sp/checkpoint_extension_example.txt"
);

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/c2sp/keys.txt");

/// The seeds of the examples' keys: SHA-256("audit-log example log key") and
/// SHA-256("audit-log example witness key").
const LOG_SEED: &str = "b689a1cd405dd6a0d0e4e7a50adcb47aa6b93bf76ff18c712bd917c40f0c2017";
const WITNESS_SEED: &str = "8efd0bba1de8ea9d2627436b512b4c91d56ede0ae9ba29f349059679ac3ed2b4";

const LOG_KEY: &str =
    "example.com/audit/tenant-a+2988e6e5+AStcbgrIX65wnp7N5SoNvTo0cbeo9bobyvjOu56hpykZ";
const WITNESS_KEY: &str =
    "witness.example/w1+d5301043+BL6zpXgcA8HJQZ8lFlCI/alSYe8D/e+Ugz3I+2ian1TF";

fn example_bytes() -> Vec<u8> {
    std::fs::read(EXAMPLE).unwrap_or_else(|e| panic!("{EXAMPLE}: {e}"))
}

/// The value of `<field> <value>` in the generator's `keys.txt`.
fn generated_key(field: &str) -> String {
    let keys = std::fs::read_to_string(KEYS).unwrap_or_else(|e| panic!("{KEYS}: {e}"));
    keys.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{KEYS}: no {field}"))
        .to_owned()
}

/// Our keys from the seeds are the generator's (which derived its key ids and encodings
/// independently).
#[test]
fn keys_match_the_generated_ones() {
    assert_eq!(generated_key("log-seed"), LOG_SEED);
    assert_eq!(generated_key("witness-seed"), WITNESS_SEED);
    let signer = log_signer();
    assert_eq!(
        signer.verifier().to_string(),
        generated_key("log-verifier-key")
    );
    assert_eq!(signer.verifier().to_string(), LOG_KEY);
    assert_eq!(
        signer.to_private_key_string(),
        generated_key("log-private-key")
    );
    assert_eq!(
        witness().verifier().to_string(),
        generated_key("witness-verifier-key")
    );
    assert_eq!(witness().verifier().to_string(), WITNESS_KEY);
}

#[test]
fn the_extension_example_verifies_and_reproduces() {
    let bytes = std::fs::read(EXTENSION_EXAMPLE).unwrap();
    let log: Verifier = LOG_KEY.parse().unwrap();
    let w: Verifier = WITNESS_KEY.parse().unwrap();
    let (cp, cosigs) = open_checkpoint(&bytes, &log, std::slice::from_ref(&w)).unwrap();
    assert_eq!(cp.size, 5);
    assert_eq!(
        cp.extensions,
        vec!["agentrail-test extension line".to_owned()]
    );
    let time: u64 = generated_key("extension-cosignature-time").parse().unwrap();
    assert_eq!(cosigs, vec![("witness.example/w1".to_owned(), time)]);
    // Byte for byte what our signers make of the same checkpoint.
    let text = cp.to_text();
    let note = Note {
        text: text.clone(),
        signatures: vec![log_signer().sign(&text), witness().cosign(&text, time)],
    };
    assert_eq!(note.to_text().as_bytes(), bytes.as_slice());
    // The extension line is signed, by the log and by the witness.
    let tampered =
        String::from_utf8(bytes)
            .unwrap()
            .replacen("extension line", "extension line!", 1);
    let err = open_checkpoint(tampered.as_bytes(), &log, &[]).unwrap_err();
    assert!(
        matches!(err, CheckpointError::Note(NoteError::BadSignature { .. })),
        "{err}"
    );
    let w_only = Note::parse(tampered.as_bytes()).unwrap();
    assert!(w.verify(&w_only.text, &w_only.signatures[1]).is_err());
}

#[test]
fn reproduces_the_example_checkpoint_byte_for_byte() {
    let signer = log_signer();
    assert_eq!(
        signer.verifier().to_string(),
        "example.com/audit/tenant-a+2988e6e5+AStcbgrIX65wnp7N5SoNvTo0cbeo9bobyvjOu56hpykZ"
    );
    assert_eq!(
        signer.to_private_key_string(),
        "PRIVATE+KEY+example.com/audit/tenant-a+2988e6e5+AbaJoc1AXdag0OTnpQrctHqmuTv3b/GMcSvZF8QPDCAX"
    );
    assert_eq!(
        witness().verifier().to_string(),
        "witness.example/w1+d5301043+BL6zpXgcA8HJQZ8lFlCI/alSYe8D/e+Ugz3I+2ian1TF"
    );
    let root: [u8; 32] =
        hex::decode("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
            .unwrap()
            .try_into()
            .unwrap();
    let cp = Checkpoint {
        origin: "example.com/audit/tenant-a".into(),
        size: 8,
        root,
        extensions: vec![],
    };
    let text = cp.to_text();
    let note = Note {
        text: text.clone(),
        signatures: vec![
            log_signer().sign(&text),
            witness().cosign(&text, 1_700_000_000),
        ],
    };
    assert_eq!(note.to_text().as_bytes(), example_bytes().as_slice());
}

#[test]
fn verifies_both_signatures_of_the_example() {
    let log: Verifier =
        "example.com/audit/tenant-a+2988e6e5+AStcbgrIX65wnp7N5SoNvTo0cbeo9bobyvjOu56hpykZ"
            .parse()
            .unwrap();
    let w: Verifier = "witness.example/w1+d5301043+BL6zpXgcA8HJQZ8lFlCI/alSYe8D/e+Ugz3I+2ian1TF"
        .parse()
        .unwrap();
    let (cp, cosigs) = open_checkpoint(&example_bytes(), &log, std::slice::from_ref(&w)).unwrap();
    assert_eq!(cp.size, 8);
    assert_eq!(
        cosigs,
        vec![("witness.example/w1".to_owned(), 1_700_000_000)]
    );
    // Without the witness key its line is ignored.
    assert!(
        open_checkpoint(&example_bytes(), &log, &[])
            .unwrap()
            .1
            .is_empty()
    );
    // The witness alone is not the log.
    let err = open_checkpoint(&example_bytes(), &log_signer_other().verifier(), &[w]).unwrap_err();
    assert!(matches!(err, CheckpointError::NotSignedByLog(_)), "{err}");

    // Tampering with the size is caught.
    let tampered = String::from_utf8(example_bytes())
        .unwrap()
        .replacen("\n8\n", "\n9\n", 1);
    let err = open_checkpoint(tampered.as_bytes(), &log, &[]).unwrap_err();
    assert!(
        matches!(err, CheckpointError::Note(NoteError::BadSignature { .. })),
        "{err}"
    );
}

fn log_signer_other() -> Signer {
    Signer::from_seed("example.com/audit/tenant-a", [9u8; 32]).unwrap()
}

#[test]
fn go_sumdb_note_known_answers() {
    // golang.org/x/mod/sumdb/note test vector.
    let signer = Signer::from_private_key_string(
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
    )
    .unwrap();
    assert_eq!(
        signer.verifier().to_string(),
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    );
    let text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    assert_eq!(
        signer.sign(text).to_line(),
        "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    );
    // The signed-note spec example.
    let v: Verifier = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
        .parse()
        .unwrap();
    let note = "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
    open(note.as_bytes(), &[&v]).unwrap();
}

#[test]
fn verifies_a_real_sum_golang_org_checkpoint() {
    let v: Verifier = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
        .parse()
        .unwrap();
    let cp = "go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\n— sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n";
    let (parsed, _) = open_checkpoint(cp.as_bytes(), &v, &[]).unwrap();
    assert_eq!(parsed.size, 6_476_701);
    let tampered = cp.replace("6476701", "6476702");
    assert!(open_checkpoint(tampered.as_bytes(), &v, &[]).is_err());
}

/// Parses `input` and renders the error (or "ok").
fn check(input: &str) -> String {
    match Note::parse(input.as_bytes()) {
        Ok(_) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn rejects_malformed_notes_with_a_clear_error() {
    let line = log_signer().sign("hello\n").to_line();
    assert_eq!(check(&format!("hello\n\n{line}")), "ok");
    assert_eq!(
        check("hello\n"),
        "note has no signatures (no blank line followed by signature lines)"
    );
    assert_eq!(
        check("hello\n\n"),
        "note has no signatures (no blank line followed by signature lines)"
    );
    assert_eq!(
        check(&format!("hello\n\n{}", line.trim_end())),
        "signature line 3 is malformed: the last signature line does not end in a newline"
    );
    assert_eq!(
        check("hello\n\n- name AAAAAAAA\n"),
        "signature line 3 is malformed: it does not start with \"— \" (U+2014, space)"
    );
    assert_eq!(
        check("hello\n\n— name\n"),
        "signature line 3 is malformed: expected \"— <name> <base64>\""
    );
    assert_eq!(
        check("hello\n\n— na+me AAAAAAAA\n"),
        "signature line 3 is malformed: invalid key name"
    );
    assert_eq!(
        check("hello\n\n— name AAAA\n"),
        "signature line 3 is malformed: signature is shorter than a key id and one byte"
    );
    assert!(check("hello\n\n— name !!!!\n").starts_with("signature line 3 is malformed: base64"));
    assert_eq!(
        check("hel\rlo\n\n— name AAAAAAAA\n"),
        "note contains control character U+000D at byte 3"
    );
    assert_eq!(Note::parse(b"\xff\n\n").unwrap_err(), NoteError::NotUtf8);
    let many: String = std::iter::repeat_n(line.as_str(), 101).collect();
    assert_eq!(
        check(&format!("hello\n\n{many}")),
        "note has more than 100 signatures"
    );

    // Text with a blank line inside: the separator is the last blank line.
    let text = "a\n\nb\n";
    let signed = Note {
        text: text.into(),
        signatures: vec![log_signer().sign(text)],
    }
    .to_text();
    open(signed.as_bytes(), &[&log_signer().verifier()]).unwrap();
}

#[test]
fn rejects_malformed_checkpoints_and_keys() {
    let bad = |text: &str| Checkpoint::parse_text(text).unwrap_err().to_string();
    assert_eq!(
        bad("o\n1\n"),
        "checkpoint needs at least 3 lines (origin, size, root), found 2"
    );
    assert_eq!(
        bad("o\n01\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n"),
        "checkpoint tree size \"01\" is not a decimal number without leading zeros"
    );
    assert_eq!(
        bad("o\n-1\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n"),
        "checkpoint tree size \"-1\" is not a decimal number without leading zeros"
    );
    assert_eq!(
        bad("o\n1\nAAAA\n"),
        "checkpoint root \"AAAA\" is not the base64 of 32 bytes"
    );
    assert_eq!(
        bad("o\n0\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n"),
        "checkpoint of size 0 must have the empty-tree root"
    );
    assert_eq!(
        bad("o\n1\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n"),
        "checkpoint line 4 is empty"
    );
    let cp = Checkpoint::parse_text("o\n1\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\next\n")
        .unwrap();
    assert_eq!(cp.extensions, vec!["ext".to_owned()]);

    let key = |s: &str| s.parse::<Verifier>().unwrap_err().to_string();
    assert!(key("nokey").contains("is not of the form"));
    assert!(
        key("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
            .contains("does not match the key")
    );
    assert!(
        key("PeterNeumann+c74f20a3+ApRc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
            .contains("unsupported signature type")
    );
    assert!(key("PeterNeumann+c74f20a3+ARpc2Q==").contains("not 32"));
    assert!(Signer::from_seed("bad name", [0; 32]).is_err());
}

#[test]
fn tlog_proof_example_round_trips() {
    use agentrail_note::TlogProof;
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/c2sp/tlog_proof_example.txt"
    ))
    .unwrap();
    let p = TlogProof::parse(&bytes).unwrap();
    assert_eq!(p.index, 5);
    assert_eq!(p.hashes.len(), 3);
    assert_eq!(
        hex::encode(p.hashes[0]),
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"
    );
    assert_eq!(p.checkpoint.as_bytes(), example_bytes().as_slice());
    assert_eq!(p.to_text().as_bytes(), bytes.as_slice());
    // The proof takes leaf 5 to the checkpoint's root (RFC 9162 §2.1.3.2, for index 5 of 8:
    // siblings right of nothing, so: left, right, left).
    use sha2::{Digest, Sha256};
    let node = |l: &[u8], r: &[u8]| -> Vec<u8> {
        Sha256::new()
            .chain_update([1u8])
            .chain_update(l)
            .chain_update(r)
            .finalize()
            .to_vec()
    };
    let leaf = hex::decode(generated_key("leaf-5-hash")).unwrap();
    let r = node(&p.hashes[0], &leaf);
    let r = node(&r, &p.hashes[1]);
    let r = node(&p.hashes[2], &r);
    let (cp, _) = open_checkpoint(p.checkpoint.as_bytes(), &LOG_KEY.parse().unwrap(), &[]).unwrap();
    assert_eq!(r, cp.root);
    assert!(TlogProof::parse(b"c2sp.org/tlog-proof@v1\nindex 05\n\nx").is_err());
    assert!(TlogProof::parse(b"c2sp.org/tlog-proof@v2\nindex 5\n\nx").is_err());
    assert!(TlogProof::parse(b"c2sp.org/tlog-proof@v1\nindex 5\nAAAA\n\nx").is_err());
}
