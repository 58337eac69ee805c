//! `agentrail canonicalize`: RFC 8785 canonical JSON of each value.

use crate::input::{self, Format};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub fn run(file: &Path, format: Option<Format>) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for (position, value) in input::values(file, format)? {
        match value.map(|v| agentrail_event::json::to_canonical_vec(&v)) {
            Ok(Ok(bytes)) => {
                out.write_all(&bytes)?;
                out.write_all(b"\n")?;
            }
            Ok(Err(e)) => {
                failed = true;
                eprintln!("{}: {position}: {e}", file.display());
            }
            Err(e) => {
                failed = true;
                eprintln!("{}: {position}: {e}", file.display());
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
