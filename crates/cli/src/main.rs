//! `agentrail`: the command-line entry point. Each subcommand lives in its own module under
//! `commands/`; this file only parses arguments and turns errors into exit codes.

mod alloc;
mod client;
mod commands;
mod input;
mod progress;

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
enum TenantCommand {
    /// Create a tenant.
    Create {
        tenant: String,
        #[command(flatten)]
        remote: client::Remote,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Create a key with scopes (events:write, events:read, export, verify, pii:reveal,
    /// tenant:admin); the key is printed once.
    Create {
        #[arg(long, env = "AGENTRAIL_TENANT")]
        tenant: String,
        /// A scope (repeatable, or comma-separated).
        #[arg(long = "scope", required = true, value_delimiter = ',')]
        scopes: Vec<String>,
        #[arg(long)]
        name: Option<String>,
        /// Print only the key (for `KEY=$(agentrail key create ... --key-only)`).
        #[arg(long)]
        key_only: bool,
        #[command(flatten)]
        remote: client::Remote,
    },
    /// Revoke a key; it stops working at once.
    Revoke {
        #[arg(long, env = "AGENTRAIL_TENANT")]
        tenant: String,
        key_id: String,
        #[command(flatten)]
        remote: client::Remote,
    },
    /// List a tenant's keys (never the keys themselves).
    List {
        #[arg(long, env = "AGENTRAIL_TENANT")]
        tenant: String,
        #[command(flatten)]
        remote: client::Remote,
    },
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
        /// Fail unless at least this many of the --witness keys cosigned it.
        #[arg(long, default_value_t = 0)]
        min_witnesses: usize,
        /// The signed note (`-` for standard input).
        file: PathBuf,
    },
    /// Run the HTTP API on the embedded default (a data directory; no external service).
    /// Prints the root key on the first start.
    Serve {
        /// Data directory [default: ./agentrail-data, or the config file's].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:7700, or the config file's].
        #[arg(long)]
        listen: Option<String>,
        /// A TOML file of server settings (see README).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Pin each tenant's newest checkpoint in this directory, outside the data directory:
        /// a ledger cut or rewritten behind it is refused [default: the config file's].
        #[arg(long)]
        trust_dir: Option<PathBuf>,
        /// Where the log key is held instead of the data directory: the Unix socket of an
        /// `agentrail signer`, or a `pkcs11:` URI of a key in a token [default: the config
        /// file's; none: system/log.key].
        #[arg(long)]
        signer: Option<PathBuf>,
        /// The query store: `postgres://user[:password]@host[:port]/db`, one PostgreSQL database
        /// shared by every tenant under row-level security [default: the config file's `index`;
        /// none: an SQLite file per tenant in the data directory].
        #[arg(long, env = "AGENTRAIL_INDEX")]
        index: Option<String>,
        /// Log as JSON lines instead of text.
        #[arg(long)]
        log_json: bool,
    },
    /// Send the events of a file to a running server in batches (NDJSON is streamed), each
    /// acknowledged durable before the next. With --data-dir, append straight into a data
    /// directory instead (no server; validates the whole file first and prints every receipt).
    Ingest {
        /// Append into this data directory instead of sending to a server.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, env = "AGENTRAIL_TENANT")]
        tenant: String,
        /// Events: a JSON object, a JSON array, or NDJSON (`-` for standard input).
        file: PathBuf,
        #[arg(long, value_enum)]
        format: Option<input::Format>,
        /// Events per request (or per durable append with --data-dir).
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
        /// Print every receipt as a JSON line, with the signed checkpoint that covers it (keep
        /// them: `agentrail verify --receipts` proves a drop or an edit with them; always
        /// printed with --data-dir).
        #[arg(long)]
        receipts: bool,
        /// With --data-dir: where the log key is held (an `agentrail signer` socket or a
        /// `pkcs11:` URI).
        #[arg(long, requires = "data_dir")]
        signer: Option<PathBuf>,
        #[command(flatten)]
        remote: client::Remote,
    },
    /// Hold the log key in a separate process: sign checkpoints for a server (`serve
    /// --signer SOCKET`) over a Unix socket, each only with a consistency proof to the newest
    /// tree already signed for its origin, recorded durably in --state. Whoever takes the
    /// data directory then can neither read the key nor have a rewritten history signed.
    Signer {
        /// The private key file (`PRIVATE+KEY+…`, as in a data directory's system/log.key;
        /// created if missing, with --name), or a `pkcs11:` URI of a key in a token.
        #[arg(long)]
        key: PathBuf,
        /// The key's name (when created, or for a token's key): the data directory's origin
        /// prefix.
        #[arg(long, default_value = "agentrail.local")]
        name: String,
        /// The record of what was signed (JSON lines; created if missing).
        #[arg(long)]
        state: PathBuf,
        /// The socket to listen on (replaced if stale).
        #[arg(long)]
        socket: PathBuf,
    },
    /// Run a C2SP tlog-witness (v1.0.0): cosign the checkpoints of the given logs (servers
    /// with `[[witnesses]]` submit them), each only if consistent with the newest it cosigned
    /// for that origin (kept in --data-dir). Run it on another host or in another trust domain.
    Witness {
        /// Where its key (witness.key, witness.vkey) and record (cosigned.jsonl) live.
        #[arg(long, default_value = "./agentrail-witness")]
        data_dir: PathBuf,
        /// The key's name when it is created.
        #[arg(long, default_value = "witness.agentrail.local")]
        name: String,
        #[arg(long, default_value = "127.0.0.1:7701")]
        listen: String,
        /// A log's verifier key (repeatable): it vouches for the origins `<name>/tenants/*`.
        #[arg(long = "log", required = true)]
        logs: Vec<String>,
    },
    /// Tenants (root key).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// A tenant's API keys (root key or a tenant:admin key).
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Ask a running server the auditor's questions (events:read key); a table, or --json.
    Query {
        #[arg(long, env = "AGENTRAIL_TENANT")]
        tenant: String,
        /// Print the server's JSON answer.
        #[arg(long, global = true)]
        json: bool,
        #[arg(long, global = true, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        remote: client::Remote,
        #[command(subcommand)]
        query: commands::remote::Query,
    },
    /// Export a tenant's events (a seq or time range) from a running server as NDJSON or Parquet
    /// with a signed manifest, and download the files (export key).
    Export {
        #[arg(long, env = "AGENTRAIL_TENANT")]
        tenant: String,
        /// RFC 3339 on received_at, inclusive.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339 on received_at, exclusive.
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        from_seq: Option<u64>,
        /// Exclusive.
        #[arg(long)]
        to_seq: Option<u64>,
        #[arg(long, default_value = "ndjson", value_parser = ["ndjson", "parquet"])]
        format: String,
        /// A named destination: export only what it has not received yet.
        #[arg(long)]
        destination: Option<String>,
        /// Parquet: `decrypted` fills the content columns (prompt, output, ...) with the sealed
        /// content, tokenized (needs events:read; the default for a key that has it); `stored`
        /// leaves them null where sealed.
        #[arg(long, value_parser = ["stored", "decrypted"])]
        view: Option<String>,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        remote: client::Remote,
    },
    /// Verify an export directory offline (no server, no data directory): the manifest's
    /// signature, every file's SHA-256, every event's hash, the chain, and that the events are the
    /// leaves of the signed tree. Exits 1 naming what failed.
    VerifyExport {
        dir: PathBuf,
        /// The tenant's verifier key (GET /v1/tenants/{t}/verifier-key).
        #[arg(long)]
        key: String,
        /// A witness's cosignature verifier key (repeatable).
        #[arg(long)]
        witness: Vec<String>,
        /// Fail unless at least this many of the --witness keys cosigned the export's
        /// checkpoint.
        #[arg(long, default_value_t = 0)]
        min_witnesses: usize,
    },
    /// Verify a tenant's WORM archive offline (no data directory, no server): every
    /// manifest's signature and chain, every object's size and SHA-256, every record and hash,
    /// the chain across segments, the Merkle root of every archived checkpoint and the
    /// consistency between them. Exits 1 naming the object and seq that failed.
    VerifyArchive {
        #[command(flatten)]
        at: commands::archive::ArchiveAt,
        #[arg(long)]
        tenant: String,
        /// The tenant's verifier key (GET /v1/tenants/{t}/verifier-key).
        #[arg(long)]
        key: String,
        /// Where the segments are fetched to while they are checked (default: the system's
        /// temporary directory); removed after.
        #[arg(long)]
        scratch: Option<PathBuf>,
    },
    /// Rebuild a data directory from the WORM archive (the disaster-recovery runbook is in the
    /// README): the ledger and checkpoints, verified, then the index. Refuses a target that is
    /// not empty.
    Restore {
        #[command(flatten)]
        at: commands::archive::ArchiveAt,
        #[arg(long)]
        data_dir: PathBuf,
        /// Only this tenant (repeatable; default: every tenant in the archive).
        #[arg(long)]
        tenant: Vec<String>,
        /// The log key (a backup of system/log.key), installed in the new data directory; it
        /// also signs each tenant's restore statement.
        #[arg(long)]
        log_key: PathBuf,
    },
    /// Drive a running server with a realistic multi-tenant agent workload, then print example
    /// queries and their answers (needs the root key).
    Demo {
        #[command(flatten)]
        remote: client::Remote,
        #[arg(long, default_value_t = 3)]
        tenants: usize,
        /// Events per tenant.
        #[arg(long, default_value_t = 3000)]
        events: usize,
        /// Where the keys the demo makes are saved (mode 0600), as `export NAME=key` lines.
        #[arg(long, default_value = "./agentrail-demo.env")]
        keys_file: PathBuf,
    },
    /// Verify a data directory offline: every record, hash, chain, session chain, causal link,
    /// Merkle node and signed checkpoint. Exits 1 with the location of the first failure per
    /// tenant if anything does not verify.
    Verify {
        #[arg(long, default_value = "./agentrail-data")]
        data_dir: PathBuf,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// The checkpoint verifier key to trust (default: the data directory's system/log.vkey).
        /// With it, events no signed checkpoint covers fail the tenant (see --allow-unsigned-tail).
        #[arg(long)]
        key: Option<String>,
        /// The trust directory the server pins checkpoints in: each tenant's records must hold
        /// its pinned checkpoint.
        #[arg(long)]
        trust_dir: Option<PathBuf>,
        /// With --key: accept events after the last signed checkpoint (after a crash, before the
        /// server's next start signs them) instead of failing the tenant.
        #[arg(long)]
        allow_unsigned_tail: bool,
        /// Receipts a client kept (`agentrail ingest --receipts` output, or ingest answers as
        /// JSON lines): every acknowledged event must be there unchanged and every signed
        /// checkpoint they carry must be a root of the ledger.
        #[arg(long)]
        receipts: Option<PathBuf>,
    },
    /// Delete a tenant's query store (or every tenant's) and rebuild it from the ledger.
    Reindex {
        #[arg(long, default_value = "./agentrail-data")]
        data_dir: PathBuf,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// The query store to rebuild: `postgres://…` (the server's `index`); none: the
        /// embedded SQLite files in the data directory.
        #[arg(long, env = "AGENTRAIL_INDEX")]
        index: Option<String>,
        /// Compute the retention cutoffs again from each policy and the clock now (recorded in
        /// the retention log), instead of keeping the latest run's: after a run by a wrong
        /// clock, restores what it purged. Check the clock first.
        #[arg(long)]
        recompute_retention: bool,
    },
    /// Print a tenant's latest signed checkpoint (signing one first if the tree grew).
    Checkpoint {
        #[arg(long, default_value = "./agentrail-data")]
        data_dir: PathBuf,
        #[arg(long)]
        tenant: String,
    },
    /// Print an inclusion proof (by --seq or --event-id) or a consistency proof (--from, --to)
    /// for a tenant, against its latest checkpoint unless --size/--to say otherwise.
    Prove {
        #[arg(long, default_value = "./agentrail-data")]
        data_dir: PathBuf,
        #[arg(long)]
        tenant: String,
        #[arg(long, conflicts_with_all = ["event_id", "from"])]
        seq: Option<u64>,
        #[arg(long, conflicts_with = "from")]
        event_id: Option<String>,
        /// Tree size to prove inclusion in.
        #[arg(long)]
        size: Option<u64>,
        /// Consistency proof from this tree size…
        #[arg(long)]
        from: Option<u64>,
        /// …to this one (default: the latest checkpoint's size).
        #[arg(long, requires = "from")]
        to: Option<u64>,
        #[arg(long, value_enum, default_value = "text")]
        format: commands::prove::ProofFormat,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { files, format } => commands::validate::run(&files, format),
        Command::Canonicalize { file, format } => commands::canonicalize::run(&file, format),
        Command::Hash { file, format } => commands::hash::run(&file, format),
        Command::Schema => commands::schema::run(),
        Command::VerifyNote {
            key,
            witness,
            min_witnesses,
            file,
        } => commands::verify_note::run(&key, &witness, min_witnesses, &file),
        Command::Serve {
            data_dir,
            listen,
            config,
            trust_dir,
            signer,
            log_json,
            index,
        } => commands::serve::run(commands::serve::ServeArgs {
            data_dir,
            listen,
            trust_dir,
            signer,
            config,
            log_json,
            index,
        }),
        Command::Ingest {
            data_dir: Some(data_dir),
            tenant,
            file,
            format,
            batch_size,
            signer,
            ..
        } => commands::ingest::run(&data_dir, &tenant, &file, format, batch_size, signer),
        Command::Ingest {
            data_dir: None,
            tenant,
            file,
            format,
            batch_size,
            receipts,
            remote,
            ..
        } => commands::remote::ingest(&remote, &tenant, &file, format, batch_size, receipts),
        Command::Witness {
            data_dir,
            name,
            listen,
            logs,
        } => commands::witness::run(&data_dir, &name, &listen, &logs),
        Command::Signer {
            key,
            name,
            state,
            socket,
        } => commands::signer::run(&key, &name, &state, &socket),
        Command::Tenant {
            command: TenantCommand::Create { tenant, remote },
        } => commands::remote::tenant_create(&remote, &tenant),
        Command::Key { command } => match command {
            KeyCommand::Create {
                tenant,
                scopes,
                name,
                key_only,
                remote,
            } => commands::remote::key_create(&remote, &tenant, &scopes, name.as_deref(), key_only),
            KeyCommand::Revoke {
                tenant,
                key_id,
                remote,
            } => commands::remote::key_revoke(&remote, &tenant, &key_id),
            KeyCommand::List { tenant, remote } => commands::remote::key_list(&remote, &tenant),
        },
        Command::Query {
            tenant,
            json,
            limit,
            remote,
            query,
        } => commands::remote::query(&remote, &tenant, query, json, limit),
        Command::Export {
            tenant,
            from,
            to,
            from_seq,
            to_seq,
            format,
            destination,
            view,
            out,
            remote,
        } => commands::export::export(
            &remote,
            commands::export::ExportArgs {
                tenant: &tenant,
                from,
                to,
                from_seq,
                to_seq,
                format: &format,
                destination,
                view,
                out: &out,
            },
        ),
        Command::VerifyExport {
            dir,
            key,
            witness,
            min_witnesses,
        } => commands::export::verify_export(&dir, &key, &witness, min_witnesses),
        Command::VerifyArchive {
            at,
            tenant,
            key,
            scratch,
        } => commands::archive::verify_archive(&at, &tenant, &key, scratch.as_deref()),
        Command::Restore {
            at,
            data_dir,
            tenant,
            log_key,
        } => commands::archive::restore(commands::archive::RestoreArgs {
            at: &at,
            data_dir: &data_dir,
            tenants: &tenant,
            log_key: &log_key,
        }),
        Command::Demo {
            remote,
            tenants,
            events,
            keys_file,
        } => commands::demo::run(&remote, tenants, events, &keys_file),
        Command::Verify {
            data_dir,
            tenant,
            key,
            trust_dir,
            allow_unsigned_tail,
            receipts,
        } => commands::verify::run(commands::verify::VerifyArgs {
            data_dir: &data_dir,
            tenant: tenant.as_deref(),
            key: key.as_deref(),
            trust_dir: trust_dir.as_deref(),
            allow_unsigned_tail,
            receipts: receipts.as_deref(),
        }),
        Command::Reindex {
            data_dir,
            tenant,
            index,
            recompute_retention,
        } => commands::reindex::run(
            &data_dir,
            tenant.as_deref(),
            index.as_deref(),
            recompute_retention,
        ),
        Command::Checkpoint { data_dir, tenant } => commands::prove::checkpoint(&data_dir, &tenant),
        Command::Prove {
            data_dir,
            tenant,
            seq,
            event_id,
            size,
            from,
            to,
            format,
        } => commands::prove::prove(
            &data_dir,
            &tenant,
            commands::prove::ProveArgs {
                seq,
                event_id: event_id.as_deref(),
                from,
                to,
                size,
                format,
            },
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
