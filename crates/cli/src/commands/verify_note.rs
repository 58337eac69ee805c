//! `agentrail verify-note`: check a signed note or checkpoint with a verifier key.

use crate::input;
use agentrail_note::{Checkpoint, Verifier, open};
use anyhow::Context;
use base64::Engine;
use std::path::Path;
use std::process::ExitCode;

pub fn run(
    key: &str,
    witnesses: &[String],
    min_witnesses: usize,
    file: &Path,
) -> anyhow::Result<ExitCode> {
    let log: Verifier = key.parse().context("--key")?;
    let witnesses: Vec<Verifier> = witnesses
        .iter()
        .map(|w| w.parse::<Verifier>().context("--witness"))
        .collect::<anyhow::Result<_>>()?;
    let bytes = input::read(file)?;
    let mut known = vec![&log];
    known.extend(witnesses.iter());
    let (note, verified) = match open(&bytes, &known) {
        Ok(ok) => ok,
        Err(e) => {
            println!("FAILED: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if !note.signatures.iter().any(|s| log.matches(s)) {
        println!("FAILED: not signed by {}", log.name());
        return Ok(ExitCode::FAILURE);
    }
    println!("signature by {}: ok", log.name());
    let mut cosigned = 0;
    for (name, ts) in &verified {
        if let Some(ts) = ts {
            println!("cosignature by {name} at {ts}: ok");
            cosigned += 1;
        }
    }
    if cosigned < min_witnesses {
        println!("FAILED: {cosigned} of the given witnesses cosigned it, {min_witnesses} required");
        return Ok(ExitCode::FAILURE);
    }
    // A checkpoint is also shown as such; other notes are just text.
    match Checkpoint::parse_text(&note.text) {
        Ok(cp) => {
            println!("origin: {}", cp.origin);
            println!("tree size: {}", cp.size);
            println!(
                "root: {}",
                base64::engine::general_purpose::STANDARD.encode(cp.root)
            );
        }
        Err(_) => print!("text:\n{}", note.text),
    }
    Ok(ExitCode::SUCCESS)
}
