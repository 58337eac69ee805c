//! Reading input files: `-` is standard input; the framing comes from `--format` or the name.

use agentrail_event::batch::BatchFormat;
use anyhow::Context;
use std::io::Read;
use std::path::Path;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// One JSON object or an array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

pub fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading standard input")?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

pub fn batch_format(path: &Path, format: Option<Format>) -> BatchFormat {
    match format {
        Some(Format::Json) => BatchFormat::Json,
        Some(Format::Ndjson) => BatchFormat::Ndjson,
        None => BatchFormat::from_file_name(&path.to_string_lossy()),
    }
}

/// The JSON values of a file, strictly parsed, each with its position, for commands that take
/// any JSON (not only emitter events).
pub fn values(
    path: &Path,
    format: Option<Format>,
) -> anyhow::Result<Vec<(String, Result<serde_json::Value, String>)>> {
    let bytes = read(path)?;
    let parse = |b: &[u8]| agentrail_event::json::parse(b).map_err(|e| e.to_string());
    Ok(match batch_format(path, format) {
        BatchFormat::Json => match parse(&bytes) {
            Ok(serde_json::Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (format!("item {i}"), Ok(v)))
                .collect(),
            other => vec![("value".to_owned(), other)],
        },
        BatchFormat::Ndjson => bytes
            .split(|&b| b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
            .map(|(i, l)| {
                (
                    format!("line {}", i + 1),
                    parse(l.strip_suffix(b"\r").unwrap_or(l)),
                )
            })
            .collect(),
    })
}
