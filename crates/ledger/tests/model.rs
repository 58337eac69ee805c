//! Model-based test: random appends, replays, checkpoints, closes and reopens across tenants
//! agree with an in-memory model (a Vec of what was acknowledged per tenant); and proofs served
//! by the ledger verify with the Merkle crate's verifier at random sizes.

mod common;

use agentrail_event::hash::to_hex;
use agentrail_event::validate_bytes;
use agentrail_ledger::stored::{StoredHeader, submitted_content_of_stored};
use agentrail_ledger::{Config, Ledger};
use agentrail_merkle::{leaf_hash, verify_consistency, verify_inclusion};
use common::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append { tenant: usize, count: usize },
    Replay { tenant: usize, pick: usize },
    Checkpoint { tenant: usize },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3usize, 1..6usize).prop_map(|(tenant, count)| Op::Append { tenant, count }),
        2 => (0..3usize, any::<usize>()).prop_map(|(tenant, pick)| Op::Replay { tenant, pick }),
        1 => (0..3usize).prop_map(|tenant| Op::Checkpoint { tenant }),
        1 => Just(Op::Reopen),
    ]
}

/// What the model remembers per acknowledged event.
#[derive(Debug, Clone)]
struct Acked {
    event_id: String,
    json: String,
    hash: String,
}

fn event_json(tenant: usize, n: usize) -> String {
    format!(
        r#"{{"schema_version":"1","event_id":"t{tenant}-{n}","event_type":"model.decision","session_id":"s{}","payload":{{"model":{{"name":"m","version":"{}"}},"reasoning":"{}"}}}}"#,
        n % 3,
        n % 2,
        "r".repeat(n * 37 % 500)
    )
}

fn cfg(dir: &std::path::Path) -> Config {
    let mut c = config(dir, clock());
    c.segment_size = 4096;
    c.max_open_tenants = 1;
    c
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn ledger_agrees_with_a_vec_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let tenants = [tenant("a"), tenant("b"), tenant("c")];
        let mut model: Vec<Vec<Acked>> = vec![Vec::new(); 3];
        let mut ledger = Ledger::open(cfg(dir.path())).unwrap();
        for op in ops {
            match op {
                Op::Append { tenant, count } => {
                    let start = model[tenant].len();
                    let jsons: Vec<String> = (start..start + count).map(|n| event_json(tenant, n)).collect();
                    let events = jsons.iter().map(|j| validate_bytes(j.as_bytes()).unwrap()).collect();
                    let receipts = ledger.append(&tenants[tenant], events).unwrap();
                    for (i, r) in receipts.iter().enumerate() {
                        prop_assert_eq!(r.seq, (start + i) as u64);
                        prop_assert!(!r.replayed);
                        model[tenant].push(Acked { event_id: r.event_id.clone(), json: jsons[i].clone(), hash: r.hash.clone() });
                    }
                }
                Op::Replay { tenant, pick } => {
                    if model[tenant].is_empty() { continue; }
                    let i = pick % model[tenant].len();
                    let a = model[tenant][i].clone();
                    let r = ledger.append(&tenants[tenant], vec![validate_bytes(a.json.as_bytes()).unwrap()]).unwrap();
                    prop_assert!(r[0].replayed);
                    prop_assert_eq!(r[0].seq, i as u64);
                    prop_assert_eq!(&r[0].hash, &a.hash);
                }
                Op::Checkpoint { tenant } => {
                    if model[tenant].is_empty() { continue; }
                    let cp = ledger.checkpoint(&tenants[tenant]).unwrap();
                    prop_assert_eq!(cp.size, model[tenant].len() as u64);
                }
                Op::Reopen => {
                    ledger.close().unwrap();
                    drop(ledger);
                    ledger = Ledger::open(cfg(dir.path())).unwrap();
                }
            }
        }
        for (t, acked) in model.iter().enumerate() {
            if acked.is_empty() {
                prop_assert!(!ledger.exists(&tenants[t]));
                continue;
            }
            prop_assert_eq!(ledger.size(&tenants[t]).unwrap(), acked.len() as u64);
            let events = ledger.read_range(&tenants[t], 0, usize::MAX).unwrap();
            prop_assert_eq!(events.len(), acked.len());
            let mut prev: Option<String> = None;
            for (seq, (ev, a)) in events.iter().zip(acked).enumerate() {
                prop_assert_eq!(ev.seq, seq as u64);
                prop_assert_eq!(to_hex(&ev.hash), a.hash.clone());
                let h = StoredHeader::parse(&ev.bytes).unwrap();
                prop_assert_eq!(&h.event_id, &a.event_id);
                prop_assert_eq!(&h.prev_hash, &prev);
                // What the emitter sent comes back out of the stored form.
                let mut sent: serde_json::Value = serde_json::from_str(&a.json).unwrap();
                sent["tenant_id"] = serde_json::Value::from(tenants[t].as_str());
                prop_assert_eq!(
                    submitted_content_of_stored(&ev.bytes).unwrap(),
                    agentrail_event::json::to_canonical_vec(&sent).unwrap()
                );
                prev = Some(a.hash.clone());
            }
        }
        ledger.close().unwrap();
        drop(ledger);
        for (t, acked) in model.iter().enumerate() {
            if !acked.is_empty() {
                let r = assert_verifies(dir.path(), &tenants[t]);
                prop_assert_eq!(r.events, acked.len() as u64);
            }
        }
    }

    #[test]
    fn ledger_proofs_verify_at_random_sizes(
        size in 1u64..400,
        picks in proptest::collection::vec((any::<u64>(), any::<u64>()), 20),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let t = tenant("acme");
        let ledger = Ledger::open(cfg(dir.path())).unwrap();
        let mut n = 0;
        while n < size {
            let k = (size - n).min(37);
            ledger.append(&t, (n..n + k).map(|i| sized_event("e", i, 200)).collect()).unwrap();
            n += k;
        }
        // Also after a reopen, from the node file alone.
        ledger.close().unwrap();
        drop(ledger);
        let ledger = Ledger::open(cfg(dir.path())).unwrap();
        for (a, b) in picks {
            let tree_size = 1 + b % size;
            let seq = a % tree_size;
            let root = ledger.root_at(&t, tree_size).unwrap();
            let leaf = leaf_hash(&ledger.read(&t, seq).unwrap().bytes);
            let proof = ledger.inclusion_proof(&t, seq, tree_size).unwrap();
            prop_assert!(verify_inclusion(seq, tree_size, &leaf, &proof, &root).is_ok());
            let from = 1 + a % tree_size;
            let root_from = ledger.root_at(&t, from).unwrap();
            let c = ledger.consistency_proof(&t, from, tree_size).unwrap();
            prop_assert!(verify_consistency(from, tree_size, &root_from, &root, &c).is_ok());
            // And the proof is against the same root the signed checkpoint commits to.
        }
        let cp = ledger.checkpoint(&t).unwrap();
        prop_assert_eq!(cp.root, ledger.root_at(&t, size).unwrap());
    }
}
