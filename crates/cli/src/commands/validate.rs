//! `agentrail validate`: every problem of every event, with its position and field path.

use crate::input::{self, Format};
use agentrail_event::batch::parse_batch;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(files: &[PathBuf], format: Option<Format>) -> anyhow::Result<ExitCode> {
    let (mut valid, mut invalid) = (0usize, 0usize);
    for file in files {
        let bytes = input::read(file)?;
        for item in parse_batch(&bytes, input::batch_format(file, format)) {
            match item.result {
                Ok(_) => valid += 1,
                Err(e) => {
                    invalid += 1;
                    for p in e.problems {
                        let path = if p.path.is_empty() {
                            "(event)".to_owned()
                        } else {
                            p.path
                        };
                        println!(
                            "{}: {}: {path}: {}",
                            file.display(),
                            item.position,
                            p.reason
                        );
                    }
                }
            }
        }
    }
    eprintln!("{valid} valid, {invalid} invalid");
    Ok(if invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
