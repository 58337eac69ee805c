//! `agentrail hash`: event hash and Merkle leaf hash of each event (DESIGN.md §3), checked against
//! the event's own `hash` field when it has one (a stored event, e.g. from an export).

use crate::input::{self, Format};
use agentrail_event::hash::{canonical_bytes, event_hash, to_hex};
use serde_json::Value;
use std::path::Path;
use std::process::ExitCode;

pub fn run(file: &Path, format: Option<Format>) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    println!("position\thash\tleaf_hash\tcheck");
    for (position, value) in input::values(file, format)? {
        let map = match value {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                failed = true;
                eprintln!(
                    "{}: {position}: an event must be a JSON object",
                    file.display()
                );
                continue;
            }
            Err(e) => {
                failed = true;
                eprintln!("{}: {position}: {e}", file.display());
                continue;
            }
        };
        let bytes = match canonical_bytes(&map) {
            Ok(b) => b,
            Err(e) => {
                failed = true;
                eprintln!("{}: {position}: {e}", file.display());
                continue;
            }
        };
        let hash = to_hex(&event_hash(&bytes));
        let leaf = to_hex(&agentrail_merkle::leaf_hash(&bytes));
        let check = match map.get("hash") {
            None => "-",
            Some(Value::String(h)) if *h == hash => "ok",
            Some(_) => {
                failed = true;
                "MISMATCH"
            }
        };
        println!("{position}\t{hash}\t{leaf}\t{check}");
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
