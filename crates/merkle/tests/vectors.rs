//! Every probe of transparency-dev/merkle's testdata (positive and negative), and property tests
//! over random sizes.

use agentrail_merkle::{Hash, MemoryTree, leaf_hash, verify_consistency, verify_inclusion};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

const DATA: &str = "../../../shared/testdata/rfc6962-transparency-dev";

fn probes(kind: &str) -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join(DATA).join(kind)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                out.push((path, v));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn b64(v: &Value) -> Vec<u8> {
    match v {
        Value::Null => Vec::new(),
        Value::String(s) => STANDARD.decode(s).unwrap(),
        other => panic!("not base64: {other}"),
    }
}

/// A 32-byte hash; probes with malformed hashes (wrong length) cannot even be expressed in our
/// API (`&[u8; 32]`), which counts as rejecting them.
fn hash(v: &Value) -> Result<Hash, ()> {
    b64(v).try_into().map_err(|_| ())
}

fn proof(v: &Value) -> Result<Vec<Hash>, ()> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|h| b64(h).try_into().map_err(|_| ()))
            .collect(),
        other => panic!("bad proof {other}"),
    }
}

#[test]
fn inclusion_probes() {
    let all = probes("inclusion");
    assert_eq!(all.len(), 98, "expected the 98 inclusion probes");
    for (path, p) in all {
        let want_err = p["wantErr"].as_bool().unwrap();
        let index = p["leafIdx"].as_u64().unwrap_or(u64::MAX);
        let size = p["treeSize"].as_u64().unwrap_or(0);
        let ok = match (proof(&p["proof"]), hash(&p["leafHash"]), hash(&p["root"])) {
            (Ok(pr), Ok(leaf), Ok(root)) => {
                verify_inclusion(index, size, &leaf, &pr, &root).is_ok()
            }
            _ => false,
        };
        assert_eq!(ok, !want_err, "{}: {}", path.display(), p["desc"]);
    }
}

#[test]
fn consistency_probes() {
    let all = probes("consistency");
    assert_eq!(all.len(), 98, "expected the 98 consistency probes");
    for (path, p) in all {
        let want_err = p["wantErr"].as_bool().unwrap();
        let (s1, s2) = (p["size1"].as_u64().unwrap(), p["size2"].as_u64().unwrap());
        // For equal sizes the reference only compares the roots' bytes, whatever their length;
        // hashing malformed roots keeps equal bytes equal and different bytes different.
        let root = |v: &Value| hash(v).or_else(|()| Ok::<Hash, ()>(leaf_hash(&b64(v))));
        let ok = match (proof(&p["proof"]), root(&p["root1"]), root(&p["root2"])) {
            (Ok(pr), Ok(r1), Ok(r2)) => verify_consistency(s1, s2, &r1, &r2, &pr).is_ok(),
            _ => false,
        };
        assert_eq!(ok, !want_err, "{}: {}", path.display(), p["desc"]);
    }
}

fn tree(size: u64) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..size {
        t.push(leaf_hash(&i.to_le_bytes()));
    }
    t
}

/// Flips one bit of one element and checks the proof no longer verifies.
fn flipped(proof: &[Hash], which: usize, bit: usize) -> Vec<Hash> {
    let mut p = proof.to_vec();
    let n = p.len();
    p[which % n][(bit / 8) % 32] ^= 1 << (bit % 8);
    p
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_inclusion_proof_verifies(size in 1u64..=10_000, seed in any::<u64>(), bit in any::<usize>()) {
        let t = tree(size);
        let root = t.root();
        // Every index of small trees; a sample spread over large ones.
        let step = (size / 200).max(1);
        let mut index = seed % step;
        while index < size {
            let p = t.inclusion_proof(index, size).unwrap();
            let leaf = leaf_hash(&index.to_le_bytes());
            prop_assert!(verify_inclusion(index, size, &leaf, &p, &root).is_ok());
            if !p.is_empty() {
                let bad = flipped(&p, (seed as usize).wrapping_add(index as usize), bit);
                prop_assert!(verify_inclusion(index, size, &leaf, &bad, &root).is_err());
            }
            prop_assert!(verify_inclusion(index, size, &leaf_hash(b"other"), &p, &root).is_err());
            index += step;
        }
    }

    #[test]
    fn every_consistency_proof_verifies(size in 1u64..=10_000, seed in any::<u64>(), bit in any::<usize>()) {
        let t = tree(size);
        let root2 = t.root();
        let step = (size / 200).max(1);
        let mut m = 1 + seed % step;
        while m <= size {
            let root1 = t.root_at(m).unwrap();
            let p = t.consistency_proof(m, size).unwrap();
            prop_assert!(verify_consistency(m, size, &root1, &root2, &p).is_ok(), "m={} n={}", m, size);
            if !p.is_empty() {
                let bad = flipped(&p, seed as usize ^ m as usize, bit);
                prop_assert!(verify_consistency(m, size, &root1, &root2, &bad).is_err());
            }
            m += step;
        }
    }
}

#[test]
fn all_pairs_of_small_trees() {
    let t = tree(130);
    for n in 1..=130u64 {
        let root_n = t.root_at(n).unwrap();
        for i in 0..n {
            let p = t.inclusion_proof(i, n).unwrap();
            verify_inclusion(i, n, &leaf_hash(&i.to_le_bytes()), &p, &root_n).unwrap();
        }
        for m in 1..=n {
            let p = t.consistency_proof(m, n).unwrap();
            verify_consistency(m, n, &t.root_at(m).unwrap(), &root_n, &p).unwrap();
        }
    }
}
