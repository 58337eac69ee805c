//! `agentrail`: the command-line entry point. Each subcommand lives in its own module under
//! `commands/`; this file only parses arguments and turns errors into exit codes.

mod commands;
mod input;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// agentrail — a tamper-evident, queryable audit trail for AI agents.
#[derive(Debug, Parser)]
#[command(name = "agentrail", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate events (a JSON object, a JSON array, or NDJSON) against event schema v1 and print
    /// every problem with its field path. Exits 1 if any event is invalid.
    Validate {
        /// Files to read (`-` for standard input). `.ndjson`/`.jsonl` files are NDJSON.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Override the framing guessed from the file name.
        #[arg(long, value_enum)]
        format: Option<input::Format>,
    },
    /// Print the RFC 8785 canonical form of each JSON value in a file, one per line.
    Canonicalize {
        file: PathBuf,
        #[arg(long, value_enum)]
        format: Option<input::Format>,
    },
    /// Print each event's hash (SHA-256 of its canonical bytes without `hash`) and Merkle leaf
    /// hash. Events that carry a `hash` field are checked against it; exits 1 on a mismatch.
    Hash {
        file: PathBuf,
        #[arg(long, value_enum)]
        format: Option<input::Format>,
    },
    /// Print the JSON Schema of event v1 (as committed in schemas/event-v1.schema.json).
    Schema,
    /// Verify a C2SP signed note or tlog checkpoint with a verifier key; witness keys are
    /// optional. Prints the checkpoint and the verified cosignatures. Exits 1 if it does not
    /// verify.
    VerifyNote {
        /// The log's verifier key, `<name>+<hex8>+<base64>`.
        #[arg(long)]
        key: String,
        /// A witness's cosignature verifier key (repeatable).
        #[arg(long)]
        witness: Vec<String>,
        /// The signed note (`-` for standard input).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { files, format } => commands::validate::run(&files, format),
        Command::Canonicalize { file, format } => commands::canonicalize::run(&file, format),
        Command::Hash { file, format } => commands::hash::run(&file, format),
        Command::Schema => commands::schema::run(),
        Command::VerifyNote { key, witness, file } => {
            commands::verify_note::run(&key, &witness, &file)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
