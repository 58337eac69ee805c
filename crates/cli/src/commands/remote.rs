//! Commands against a running server: `tenant create`, `key create|revoke|list`, `ingest FILE`
//! (without `--data-dir`) and `query ...`.

use crate::client::{Client, Remote, enc};
use crate::input::{self, Format};
use crate::progress::Progress;
use agentrail_event::batch::BatchFormat;
use anyhow::{anyhow, bail};
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

fn print_json(v: &Value) {
    println!("{v:#}");
}

pub fn tenant_create(r: &Remote, tenant: &str) -> anyhow::Result<ExitCode> {
    let a = Client::new(r).post_json("/v1/tenants", &json!({"tenant_id": tenant}))?;
    if !a.ok() {
        return Err(a.error());
    }
    print_json(&a.json()?);
    Ok(ExitCode::SUCCESS)
}

pub fn key_create(
    r: &Remote,
    tenant: &str,
    scopes: &[String],
    name: Option<&str>,
    key_only: bool,
) -> anyhow::Result<ExitCode> {
    let body = json!({"scopes": scopes, "name": name});
    let a = Client::new(r).post_json(&format!("/v1/tenants/{}/keys", enc(tenant)), &body)?;
    if !a.ok() {
        return Err(a.error());
    }
    let created = a.json()?;
    if key_only {
        let key = created["key"]
            .as_str()
            .ok_or_else(|| anyhow!("the server's answer holds no key"))?;
        println!("{key}");
    } else {
        print_json(&created);
    }
    eprintln!("the key is shown only now; store it safely");
    Ok(ExitCode::SUCCESS)
}

pub fn key_revoke(r: &Remote, tenant: &str, key_id: &str) -> anyhow::Result<ExitCode> {
    let a = Client::new(r).delete(&format!("/v1/tenants/{}/keys/{}", enc(tenant), enc(key_id)))?;
    if !a.ok() {
        return Err(a.error());
    }
    println!("revoked {key_id}");
    Ok(ExitCode::SUCCESS)
}

pub fn key_list(r: &Remote, tenant: &str) -> anyhow::Result<ExitCode> {
    let v = Client::new(r).get_json(&format!("/v1/tenants/{}/keys", enc(tenant)))?;
    let empty = vec![];
    println!("{:<18} {:<20} {:<40} STATE", "KEY ID", "NAME", "SCOPES");
    for k in v["keys"].as_array().unwrap_or(&empty) {
        let scopes: Vec<&str> = k["scopes"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let state = match k["revoked_at"].as_str() {
            Some(t) => format!("revoked {t}"),
            None => "active".into(),
        };
        println!(
            "{:<18} {:<20} {:<40} {}",
            k["key_id"].as_str().unwrap_or(""),
            k["name"].as_str().unwrap_or(""),
            scopes.join(","),
            state
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Streams a file to the server in batches (NDJSON: line by line, never the whole file in
/// memory). Each batch is all-or-nothing and acknowledged durable before the next is sent.
pub fn ingest(
    r: &Remote,
    tenant: &str,
    file: &Path,
    format: Option<Format>,
    batch_size: usize,
    receipts: bool,
) -> anyhow::Result<ExitCode> {
    if batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let client = Client::new(r);
    let path = format!("/v1/tenants/{}/events", enc(tenant));
    let out = std::io::stdout();
    let mut out = out.lock();
    let mut acked = 0u64;
    let mut send = |body: &[u8],
                    ctype: &str,
                    first_line: usize,
                    progress: &mut Progress,
                    n: u64|
     -> anyhow::Result<bool> {
        let a = client.post_retrying(&path, ctype, body, 20)?;
        if !a.ok() {
            let mut err = a.error().to_string();
            if first_line > 1 {
                err.push_str(&format!(
                    "\n(line numbers are within the batch starting at line {first_line} of the file)"
                ));
            }
            progress.finish();
            eprintln!("error: {err}");
            eprintln!(
                "{acked} events were acknowledged before this batch; this batch was not stored"
            );
            return Ok(false);
        }
        let v = a.json()?;
        let got = v["receipts"].as_array().map_or(0, Vec::len) as u64;
        if receipts {
            // Each receipt with the signed checkpoint its answer carried: a line of this is
            // what `agentrail verify --receipts` checks a data directory against.
            for rc in v["receipts"].as_array().into_iter().flatten() {
                let mut rc = rc.clone();
                if let (Some(m), Some(cp)) = (rc.as_object_mut(), v.get("checkpoint")) {
                    m.insert("checkpoint".into(), cp.clone());
                }
                writeln!(out, "{rc}")?;
            }
        }
        acked += got;
        progress.add(n);
        Ok(true)
    };
    match input::batch_format(file, format) {
        BatchFormat::Json => {
            let bytes = input::read(file)?;
            let mut p = Progress::new(1, "requests");
            if !send(&bytes, "application/json", 1, &mut p, 1)? {
                return Ok(ExitCode::FAILURE);
            }
            p.finish();
        }
        BatchFormat::Ndjson => {
            let total = if file == Path::new("-") {
                0
            } else {
                std::fs::metadata(file).map(|m| m.len()).unwrap_or(0)
            };
            let reader: Box<dyn BufRead> = if file == Path::new("-") {
                Box::new(std::io::BufReader::new(std::io::stdin()))
            } else {
                Box::new(std::io::BufReader::with_capacity(
                    1 << 20,
                    std::fs::File::open(file)
                        .map_err(|e| anyhow!("reading {}: {e}", file.display()))?,
                ))
            };
            let mut p = Progress::bytes(total, "");
            let mut batch = Vec::new();
            let (mut in_batch, mut first_line) = (0usize, 1usize);
            for (i, line) in reader.split(b'\n').enumerate() {
                let line = line?;
                if batch.is_empty() {
                    first_line = i + 1;
                }
                batch.extend_from_slice(&line);
                batch.push(b'\n');
                if !line.iter().all(u8::is_ascii_whitespace) {
                    in_batch += 1;
                }
                if in_batch >= batch_size || batch.len() >= 16 << 20 {
                    let n = batch.len() as u64;
                    if !send(&batch, "application/x-ndjson", first_line, &mut p, n)? {
                        return Ok(ExitCode::FAILURE);
                    }
                    batch.clear();
                    in_batch = 0;
                }
            }
            if in_batch > 0 {
                let n = batch.len() as u64;
                if !send(&batch, "application/x-ndjson", first_line, &mut p, n)? {
                    return Ok(ExitCode::FAILURE);
                }
            }
            p.finish();
        }
    }
    eprintln!("{acked} events acknowledged durable");
    Ok(ExitCode::SUCCESS)
}

/// What `agentrail query` asks.
#[derive(Debug, clap::Subcommand)]
pub enum Query {
    /// A session's events in order, and whether its hash chain is unbroken.
    Session { session_id: String },
    /// What led to an event (its causal chain, backwards).
    Causes {
        event_id: String,
        #[arg(long)]
        depth: Option<u32>,
    },
    /// What an event led to (forwards).
    Effects {
        event_id: String,
        #[arg(long)]
        depth: Option<u32>,
    },
    /// Human override history.
    Reviews {
        #[arg(long)]
        decision: Option<String>,
        #[arg(long)]
        reviewer: Option<String>,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
    },
    /// Anomalies of one kind: fast_approval, executed_after_rejection, dangling_cause,
    /// clock_skew, tool_error_burst.
    Anomalies {
        kind: String,
        #[arg(long)]
        max_latency_ms: Option<i64>,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
    },
    /// Events by filters.
    Events {
        #[arg(long)]
        session_id: Option<String>,
        #[arg(long)]
        agent_id: Option<String>,
        #[arg(long)]
        event_type: Option<String>,
        #[arg(long)]
        actor_id: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        tool: Option<String>,
        #[arg(long)]
        decision: Option<String>,
        /// A PII token (`tok_<type>_<id>`): events whose content held that value (while it
        /// is in the hot index).
        #[arg(long)]
        token: Option<String>,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
    },
    /// A model's decisions by version, and what they caused.
    Model {
        name: String,
        #[arg(long)]
        version: Option<String>,
    },
}

fn qs(pairs: &[(&str, Option<String>)], limit: usize) -> String {
    let mut out = format!("?limit={limit}");
    for (k, v) in pairs {
        if let Some(v) = v {
            out.push_str(&format!("&{k}={}", enc(v)));
        }
    }
    out
}

/// One line per event: seq, time, type, id, and what it is about.
fn event_line(e: &Value) -> String {
    let p = &e["payload"];
    let about = match e["event_type"].as_str().unwrap_or("") {
        "model.decision" => format!(
            "{} {} → {}",
            p["model"]["name"].as_str().unwrap_or("?"),
            p["model"]["version"].as_str().unwrap_or(""),
            p["decision"]["kind"].as_str().unwrap_or("")
        ),
        "tool.invocation" => format!(
            "{} {}",
            p["tool"]["name"].as_str().unwrap_or("?"),
            p["status"]["outcome"].as_str().unwrap_or("")
        ),
        "human.review" => format!(
            "{} by {}",
            p["decision"].as_str().unwrap_or("?"),
            p["reviewer"]["id"].as_str().unwrap_or("?")
        ),
        _ => e["session_id"].as_str().unwrap_or("").to_owned(),
    };
    format!(
        "{:>8}  {:<30}  {:<22} {:<28} {}",
        e["seq"].as_u64().unwrap_or(0),
        e["occurred_at"].as_str().unwrap_or(""),
        e["event_type"].as_str().unwrap_or(""),
        e["event_id"].as_str().unwrap_or(""),
        about
    )
}

fn table(events: &[Value]) {
    println!(
        "{:>8}  {:<30}  {:<22} {:<28} ABOUT",
        "SEQ", "OCCURRED_AT", "TYPE", "EVENT_ID"
    );
    for e in events {
        println!("{}", event_line(e));
    }
    results(events.len());
}

/// How many rows a table showed, so that an empty answer reads as one ("0 results"), not as a
/// failure.
fn results(n: usize) {
    println!("{n} result{}", if n == 1 { "" } else { "s" });
}

pub fn query(
    r: &Remote,
    tenant: &str,
    q: Query,
    as_json: bool,
    limit: usize,
) -> anyhow::Result<ExitCode> {
    let c = Client::new(r);
    let base = format!("/v1/tenants/{}", enc(tenant));
    let empty = vec![];
    let path = match &q {
        Query::Session { session_id } => {
            format!("{base}/sessions/{}{}", enc(session_id), qs(&[], limit))
        }
        Query::Causes { event_id, depth } | Query::Effects { event_id, depth } => {
            let dir = if matches!(q, Query::Causes { .. }) {
                "causes"
            } else {
                "effects"
            };
            let d = depth.map_or(String::new(), |d| format!("?depth={d}"));
            format!("{base}/events/{}/{dir}{d}", enc(event_id))
        }
        Query::Reviews {
            decision,
            reviewer,
            from,
            to,
        } => format!(
            "{base}/reviews{}",
            qs(
                &[
                    ("decision", decision.clone()),
                    ("reviewer", reviewer.clone()),
                    ("from", from.clone()),
                    ("to", to.clone())
                ],
                limit
            )
        ),
        Query::Anomalies {
            kind,
            max_latency_ms,
            from,
            to,
        } => format!(
            "{base}/anomalies{}",
            qs(
                &[
                    ("kind", Some(kind.clone())),
                    ("max_latency_ms", max_latency_ms.map(|m| m.to_string())),
                    ("from", from.clone()),
                    ("to", to.clone())
                ],
                limit
            )
        ),
        Query::Events {
            session_id,
            agent_id,
            event_type,
            actor_id,
            model,
            tool,
            decision,
            token,
            from,
            to,
        } => format!(
            "{base}/events{}",
            qs(
                &[
                    ("session_id", session_id.clone()),
                    ("agent_id", agent_id.clone()),
                    ("event_type", event_type.clone()),
                    ("actor_id", actor_id.clone()),
                    ("model", model.clone()),
                    ("tool", tool.clone()),
                    ("decision", decision.clone()),
                    ("token", token.clone()),
                    ("from", from.clone()),
                    ("to", to.clone())
                ],
                limit
            )
        ),
        Query::Model { name, version } => format!(
            "{base}/models/{}{}",
            enc(name),
            qs(&[("version", version.clone())], limit)
        ),
    };
    let v = c.get_json(&path)?;
    if as_json {
        print_json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    match q {
        Query::Session { .. } => {
            println!(
                "session {}: {} events, chain {}",
                v["session_id"].as_str().unwrap_or(""),
                v["total"],
                if v["chain"]["unbroken"] == json!(true) {
                    "unbroken".to_owned()
                } else {
                    format!("BROKEN: {}", v["chain"]["breaks"])
                }
            );
            table(v["events"].as_array().unwrap_or(&empty));
        }
        Query::Causes { .. } | Query::Effects { .. } => {
            println!(
                "{} of {} (depth {}{}):",
                v["direction"].as_str().unwrap_or(""),
                v["root"].as_str().unwrap_or(""),
                v["depth"],
                if v["truncated"] == json!(true) {
                    ", truncated"
                } else {
                    ""
                }
            );
            table(v["nodes"].as_array().unwrap_or(&empty));
            for d in v["dangling"].as_array().unwrap_or(&empty) {
                println!(
                    "dangling: {} names missing cause {}",
                    d["event_id"], d["missing_cause"]
                );
            }
        }
        Query::Reviews { .. } => {
            println!(
                "{:>8}  {:<10} {:<16} {:>10}  PROPOSED",
                "SEQ", "DECISION", "REVIEWER", "LATENCY"
            );
            for rv in v["reviews"].as_array().unwrap_or(&empty) {
                println!(
                    "{:>8}  {:<10} {:<16} {:>8}ms  {}",
                    rv["event"]["seq"].as_u64().unwrap_or(0),
                    rv["decision"].as_str().unwrap_or(""),
                    rv["reviewer"].as_str().unwrap_or(""),
                    rv["latency_ms"]
                        .as_i64()
                        .map_or("-".into(), |l| l.to_string()),
                    rv["proposed_event_id"].as_str().unwrap_or("")
                );
            }
            results(v["reviews"].as_array().map_or(0, Vec::len));
        }
        Query::Anomalies { .. } => {
            println!("{:>8}  {:<26} {:<28} DETAIL", "SEQ", "KIND", "EVENT_ID");
            for a in v["anomalies"].as_array().unwrap_or(&empty) {
                println!(
                    "{:>8}  {:<26} {:<28} {}",
                    a["seq"].as_u64().unwrap_or(0),
                    a["kind"].as_str().unwrap_or(""),
                    a["event_id"].as_str().unwrap_or(""),
                    a["detail"]
                );
            }
            results(v["anomalies"].as_array().map_or(0, Vec::len));
        }
        Query::Events { .. } => table(v["events"].as_array().unwrap_or(&empty)),
        Query::Model { .. } => {
            for c in v["counts_by_version"].as_array().unwrap_or(&empty) {
                println!("version {}: {} decisions", c["version"], c["count"]);
            }
            table(v["decisions"].as_array().unwrap_or(&empty));
            println!("caused ({}):", v["caused"].as_array().map_or(0, Vec::len));
            table(v["caused"].as_array().unwrap_or(&empty));
        }
    }
    if let Some(next) = v["next_cursor"].as_str() {
        println!("(more: next cursor {next})");
    }
    Ok(ExitCode::SUCCESS)
}
