//! The per-tenant query store: one SQLite database per tenant under
//! `<data-dir>/tenants/<id>/index/index.sqlite`, fed from the ledger in seq order. It records how
//! far it has applied the ledger in the same transaction as the rows, so it is always a prefix of
//! the ledger; deleting it and catching up rebuilds it.

use crate::error::IndexError;
use agentrail_event::TenantId;
use agentrail_event::hash::to_hex;
use agentrail_ledger::layout::DataDir;
use agentrail_ledger::{Ledger, StoredEvent};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bumped when the schema changes; an index of another version is rebuilt.
const SCHEMA_VERSION: i64 = 7;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    session_id TEXT,
    session_seq INTEGER,
    session_prev_hash BLOB,
    agent_id TEXT,
    actor_id TEXT,
    actor_type TEXT,
    subject_id TEXT,
    occurred_ns INTEGER,
    received_ns INTEGER NOT NULL,
    tool_name TEXT,
    outcome TEXT,
    classification TEXT,
    model_provider TEXT,
    model_name TEXT,
    model_version TEXT,
    review_decision TEXT,
    reviewer_id TEXT,
    review_latency_ms INTEGER,
    proposed_event_id TEXT,
    clock_skew_ms INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS events_event_id ON events(event_id);
CREATE INDEX IF NOT EXISTS events_session ON events(session_id, session_seq) WHERE session_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_type ON events(event_type, seq);
CREATE INDEX IF NOT EXISTS events_occurred ON events(occurred_ns);
CREATE INDEX IF NOT EXISTS events_received ON events(received_ns);
CREATE INDEX IF NOT EXISTS events_model ON events(model_name, model_version, seq, occurred_ns) WHERE model_name IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_tool ON events(tool_name, seq) WHERE tool_name IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_model_time ON events(model_name, occurred_ns, model_version) WHERE model_name IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_tool_outcome ON events(tool_name, outcome, seq) WHERE tool_name IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_reviewer ON events(reviewer_id, seq) WHERE reviewer_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_review ON events(review_decision, seq) WHERE review_decision IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_proposed ON events(proposed_event_id) WHERE proposed_event_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_agent ON events(agent_id, seq) WHERE agent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_actor ON events(actor_id, seq) WHERE actor_id IS NOT NULL;
-- Causal links: the child's `caused_by` (via NULL), or derived by the index from a tool call
-- id (via 'tool_call_id': the decision that asked for the call, not hash-linked).
CREATE TABLE IF NOT EXISTS causes (
    child_seq INTEGER NOT NULL,
    parent_event_id TEXT NOT NULL,
    parent_hash BLOB,
    via TEXT,
    PRIMARY KEY (child_seq, parent_event_id)
) WITHOUT ROWID;
-- Tool call ids by scope (the trace, else the session): role 0 a decision that asked for the
-- call (its `decision.tool_call_ids`), 1 an invocation (`call_id`), 2 a review of the proposed
-- call (`proposed_action.tool_call_id`). Whichever arrives last makes the link.
CREATE TABLE IF NOT EXISTS tool_calls (
    scope TEXT NOT NULL,
    call_id TEXT NOT NULL,
    role INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (scope, call_id, role, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tool_calls_seq ON tool_calls(seq);
CREATE INDEX IF NOT EXISTS causes_parent ON causes(parent_event_id);
-- Causal links whose cause is not (yet) in the ledger; a row goes when its cause arrives.
CREATE TABLE IF NOT EXISTS dangling (
    child_seq INTEGER NOT NULL,
    parent_event_id TEXT NOT NULL,
    PRIMARY KEY (child_seq, parent_event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dangling_parent ON dangling(parent_event_id);
-- Tool invocations caused by a decision whose proposed action a human rejected.
CREATE TABLE IF NOT EXISTS rejected_executions (
    seq INTEGER NOT NULL,
    decision_event_id TEXT NOT NULL,
    review_event_id TEXT NOT NULL,
    PRIMARY KEY (seq)
) WITHOUT ROWID;
-- Tool calls and failures per tool per minute of occurred_at, for error-burst windows.
CREATE TABLE IF NOT EXISTS tool_minutes (
    tool TEXT NOT NULL,
    minute INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    PRIMARY KEY (minute, tool)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attrs (
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (key, value, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS attrs_seq ON attrs(seq);
-- The hot content: an event's sensitive fields as the content source opened them (tokenized,
-- never raw PII), `{path: value}`, while within the tenant's hot_content_days; and the tokens in
-- them, for search by token. Erasure and the retention job delete these rows (secure_delete).
CREATE TABLE IF NOT EXISTS content (
    seq INTEGER PRIMARY KEY,
    subject_id TEXT,
    received_ns INTEGER NOT NULL,
    fields TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS content_subject ON content(subject_id) WHERE subject_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS content_received ON content(received_ns);
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (token, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tokens_seq ON tokens(seq);
";

/// What the index may hold of one event's sensitive content: the opened, tokenized fields as
/// JSON text (`{"<path>": value, …}`) and the tokens that occur in them.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    pub fields: String,
    pub tokens: Vec<String>,
}

/// What an index asks of the layers above it (the vault and the retention job sit above this
/// crate): the content it may hold of an event, which data subjects were erased, and the
/// retention cutoffs in force. Set on an index with [`TenantIndex::set_source`].
pub trait IndexSource: Send + Sync + std::fmt::Debug {
    /// The content of a stored event the index may hold for search; `None` when it has none that
    /// may be held (no sealed fields, or their keys were shredded).
    fn content(&self, tenant: &TenantId, stored: &Value) -> Option<Content>;
    /// The data subjects of the tenant whose keys were shredded.
    fn erased_subjects(&self, tenant: &TenantId) -> Vec<String>;
    /// The retention cutoffs of the tenant's latest retention run (none before the first).
    fn cutoffs(&self, tenant: &TenantId) -> Cutoffs;
}

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Purged {
    /// Events whose content left the index.
    pub content: u64,
    /// Events whose rows left the index entirely.
    pub events: u64,
}

/// The retention cutoffs an index applies: content of events received before `content_ns`, and
/// every row of events received before `events_ns`, is not held (nanoseconds since the epoch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cutoffs {
    pub content_ns: i64,
    pub events_ns: i64,
}

/// The query store of one tenant.
#[derive(Debug)]
pub struct TenantIndex {
    pub(crate) conn: Connection,
    pub(crate) tenant: TenantId,
    path: PathBuf,
    applied: u64,
    source: Option<Arc<dyn IndexSource>>,
    cutoffs: Cutoffs,
    /// A purge or erasure could not truncate the write-ahead log yet (readers held it): the
    /// next apply tries again, so deleted content does not stay in old log frames.
    wal_dirty: bool,
}

/// Where a tenant's index lives.
pub fn index_path(data_dir: &Path, tenant: &TenantId) -> PathBuf {
    DataDir::new(data_dir).tenant(tenant).index_db()
}

/// Moves a damaged index out of the way (to `index.sqlite.damaged`, replacing an older one) and
/// removes its write-ahead log and shared memory, so the next open starts an empty index.
/// Returns where it went, if there was one.
pub fn move_aside(data_dir: &Path, tenant: &TenantId) -> Result<Option<PathBuf>, IndexError> {
    let tp = DataDir::new(data_dir).tenant(tenant);
    let (db, aside) = (tp.index_db(), tp.index_damaged());
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| IndexError::Io { path, source }
    };
    let moved = match std::fs::rename(&db, &aside) {
        Ok(()) => Some(aside),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(&db)(e)),
    };
    for suffix in ["-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&p)(e)),
        }
    }
    Ok(moved)
}

/// Nanoseconds since the epoch of an RFC 3339 timestamp.
pub(crate) fn ts_ns(s: &str) -> Option<i64> {
    let t: jiff::Timestamp = s.parse().ok()?;
    i64::try_from(t.as_nanosecond()).ok()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

impl TenantIndex {
    /// Opens (creating if needed) the index of `tenant` in a data directory.
    pub fn open(data_dir: &Path, tenant: &TenantId) -> Result<TenantIndex, IndexError> {
        TenantIndex::open_at(&index_path(data_dir, tenant), tenant)
    }

    /// Opens the index of `tenant` in the ledger's data directory and catches it up with the
    /// ledger: what a reader does before answering queries.
    pub fn open_caught_up(ledger: &Ledger, tenant: &TenantId) -> Result<TenantIndex, IndexError> {
        let mut index = TenantIndex::open(ledger.data_dir(), tenant)?;
        index.catch_up(ledger)?;
        Ok(index)
    }

    /// Opens (creating if needed) an index database at `path`.
    pub fn open_at(path: &Path, tenant: &TenantId) -> Result<TenantIndex, IndexError> {
        let io = |e: std::io::Error| IndexError::Io {
            path: path.to_path_buf(),
            source: e,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let sql = |e: rusqlite::Error| IndexError::sql("open the index", e);
        let conn = Connection::open(path).map_err(sql)?;
        // Derived data: a crash may lose the last transactions (WAL, synchronous=NORMAL), never
        // consistency; the next catch-up re-applies them from the ledger.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY;
             PRAGMA cache_size=-65536; PRAGMA foreign_keys=OFF; PRAGMA secure_delete=ON;",
        )
        .map_err(sql)?;
        let version: Option<i64> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .or_else(|e| match e {
                // A brand-new database has no meta table yet.
                rusqlite::Error::SqliteFailure(_, Some(ref m)) if m.contains("no such table") => {
                    Ok(None)
                }
                e => Err(e),
            })
            .map_err(sql)?;
        if version.is_some_and(|v| v != SCHEMA_VERSION) {
            drop(conn);
            for suffix in ["", "-wal", "-shm"] {
                let p = PathBuf::from(format!("{}{suffix}", path.display()));
                if p.exists() {
                    std::fs::remove_file(&p).map_err(io)?;
                }
            }
            return TenantIndex::open_at(path, tenant);
        }
        conn.execute_batch(SCHEMA).map_err(sql)?;
        conn.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?1), ('applied', 0),
               ('content_cutoff_ns', 0), ('events_cutoff_ns', 0)",
            params![SCHEMA_VERSION],
        )
        .map_err(sql)?;
        let meta = |key: &str| -> Result<i64, IndexError> {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .map_err(sql)
        };
        let applied = meta("applied")?;
        let cutoffs = Cutoffs {
            content_ns: meta("content_cutoff_ns")?,
            events_ns: meta("events_cutoff_ns")?,
        };
        Ok(TenantIndex {
            conn,
            tenant: tenant.clone(),
            path: path.to_path_buf(),
            applied: u64::try_from(applied).unwrap_or(0),
            source: None,
            cutoffs,
            wal_dirty: false,
        })
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// Events applied from now on get their content from `source` (the service passes one that
    /// opens sealed fields with the vault; without one, no content is held). Now, the content of
    /// the subjects the source says were erased is dropped (an erasure interrupted after its
    /// keys were shredded is completed here) and the source's retention cutoffs are applied (the
    /// index may have been rebuilt since the last retention run).
    pub fn set_source(&mut self, source: Option<Arc<dyn IndexSource>>) -> Result<(), IndexError> {
        if let Some(src) = &source {
            let erased = src.erased_subjects(&self.tenant);
            if !erased.is_empty() {
                self.erase_subjects(&erased)?;
            }
            self.purge(src.cutoffs(&self.tenant))?;
        }
        self.source = source;
        Ok(())
    }

    /// The retention cutoffs this index applies.
    pub fn cutoffs(&self) -> Cutoffs {
        self.cutoffs
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next seq to apply: the index holds exactly the ledger's events `[0, applied)`.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Applies stored events, which must continue exactly at [`TenantIndex::applied`], in one
    /// transaction.
    pub fn apply(&mut self, events: &[StoredEvent]) -> Result<(), IndexError> {
        let sql = |e: rusqlite::Error| IndexError::sql("apply events", e);
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO events (seq, hash, event_id, event_type, session_id, session_seq,
                        session_prev_hash, agent_id, actor_id, actor_type, subject_id, occurred_ns,
                        received_ns, tool_name, outcome, classification, model_provider, model_name,
                        model_version, review_decision, reviewer_id, review_latency_ms,
                        proposed_event_id, clock_skew_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                        ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
                )
                .map_err(sql)?;
            let mut cause = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO causes (child_seq, parent_event_id, parent_hash)
                     VALUES (?1, ?2, ?3)",
                )
                .map_err(sql)?;
            let mut attr = tx
                .prepare_cached("INSERT OR IGNORE INTO attrs (key, value, seq) VALUES (?1, ?2, ?3)")
                .map_err(sql)?;
            let mut known = tx
                .prepare_cached("SELECT 1 FROM events WHERE event_id = ?1")
                .map_err(sql)?;
            let mut dangle = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO dangling (child_seq, parent_event_id) VALUES (?1, ?2)",
                )
                .map_err(sql)?;
            let mut resolve = tx
                .prepare_cached("DELETE FROM dangling WHERE parent_event_id = ?1")
                .map_err(sql)?;
            // A tool call caused by a rejected decision, whichever of the two arrives last.
            let mut rejected_by_cause = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO rejected_executions (seq, decision_event_id, review_event_id)
                     SELECT ?1, r.proposed_event_id, r.event_id FROM events r
                     WHERE r.proposed_event_id = ?2 AND r.review_decision = 'reject'",
                )
                .map_err(sql)?;
            let mut rejected_by_review = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO rejected_executions (seq, decision_event_id, review_event_id)
                     SELECT c.child_seq, ?1, ?2 FROM causes c JOIN events t ON t.seq = c.child_seq
                     WHERE c.parent_event_id = ?1 AND t.event_type = 'tool.invocation'",
                )
                .map_err(sql)?;
            let mut minute = tx
                .prepare_cached(
                    "INSERT INTO tool_minutes (tool, minute, calls, errors, first_seq)
                     VALUES (?1, ?2, 1, ?3, ?4)
                     ON CONFLICT (minute, tool) DO UPDATE SET calls = calls + 1,
                       errors = errors + excluded.errors,
                       first_seq = min(first_seq, excluded.first_seq)",
                )
                .map_err(sql)?;
            let mut content = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO content (seq, subject_id, received_ns, fields)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sql)?;
            let mut token = tx
                .prepare_cached("INSERT OR IGNORE INTO tokens (token, seq) VALUES (?1, ?2)")
                .map_err(sql)?;
            let mut call = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO tool_calls (scope, call_id, role, seq)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sql)?;
            // The first decision in the scope that asked for a call.
            let mut decision_for = tx
                .prepare_cached(
                    "SELECT e.seq, e.event_id FROM tool_calls t JOIN events e ON e.seq = t.seq
                     WHERE t.scope = ?1 AND t.call_id = ?2 AND t.role = 0 ORDER BY t.seq LIMIT 1",
                )
                .map_err(sql)?;
            // Invocations, then reviews, that named a call before its decision arrived.
            let mut waiting = tx
                .prepare_cached(
                    "SELECT t.role, e.seq, e.event_id, e.review_decision
                     FROM tool_calls t JOIN events e ON e.seq = t.seq
                     WHERE t.scope = ?1 AND t.call_id = ?2 AND t.role > 0 ORDER BY t.role, t.seq",
                )
                .map_err(sql)?;
            let mut derived = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO causes (child_seq, parent_event_id, parent_hash, via)
                     VALUES (?1, ?2, NULL, 'tool_call_id')",
                )
                .map_err(sql)?;
            let mut propose = tx
                .prepare_cached(
                    "UPDATE events SET proposed_event_id = ?2
                     WHERE seq = ?1 AND proposed_event_id IS NULL",
                )
                .map_err(sql)?;
            let mut expect = self.applied;
            for ev in events {
                if ev.seq != expect {
                    return Err(IndexError::Apply {
                        seq: ev.seq,
                        reason: format!("expected seq {expect}"),
                    });
                }
                let bad = |reason: String| IndexError::Apply {
                    seq: ev.seq,
                    reason,
                };
                let body = std::str::from_utf8(&ev.bytes)
                    .map_err(|_| bad("stored event is not UTF-8".into()))?;
                let v: Value =
                    serde_json::from_str(body).map_err(|e| bad(format!("stored event: {e}")))?;
                let event_type = str_at(&v, &["event_type"]).unwrap_or_default();
                let payload = v.get("payload").unwrap_or(&Value::Null);
                let p = |path: &[&str]| str_at(payload, path).map(str::to_owned);
                let (tool_name, outcome) = if event_type == "tool.invocation" {
                    (p(&["tool", "name"]), p(&["status", "outcome"]))
                } else {
                    (None, None)
                };
                let (provider, model, version) = if event_type == "model.decision" {
                    (
                        p(&["model", "provider"]),
                        p(&["model", "name"]),
                        p(&["model", "version"]),
                    )
                } else {
                    (None, None, None)
                };
                // Tool call ids link within a trace, else within a session.
                let scope = str_at(&v, &["trace", "trace_id"])
                    .or_else(|| str_at(&v, &["session_id"]))
                    .unwrap_or_default();
                let (decision, reviewer, latency, proposed) = if event_type == "human.review" {
                    let latency = match (p(&["presented_at"]), p(&["decided_at"])) {
                        (Some(a), Some(b)) => ts_ns(&a)
                            .zip(ts_ns(&b))
                            .map(|(a, b)| (b - a).div_euclid(1_000_000)),
                        _ => None,
                    };
                    (
                        p(&["decision"]),
                        p(&["reviewer", "id"]),
                        latency,
                        match (
                            p(&["proposed_action", "event_id"]),
                            str_at(payload, &["proposed_action", "tool_call_id"]),
                        ) {
                            (Some(id), _) => Some(id),
                            (None, Some(call_id)) => decision_for
                                .query_row(params![scope, call_id], |r| r.get::<_, String>(1))
                                .optional()
                                .map_err(sql)?,
                            (None, None) => None,
                        },
                    )
                } else {
                    (None, None, None, None)
                };
                let received = str_at(&v, &["received_at"])
                    .and_then(ts_ns)
                    .ok_or_else(|| bad("stored event has no valid received_at".into()))?;
                if received < self.cutoffs.events_ns {
                    // Beyond the tenant's retention: the ledger keeps it, the index does not.
                    expect += 1;
                    continue;
                }
                if received >= self.cutoffs.content_ns
                    && let Some(src) = &self.source
                    && let Some(c) = src.content(&self.tenant, &v)
                {
                    content
                        .execute(rusqlite::params![
                            ev.seq as i64,
                            str_at(&v, &["subject_id"]),
                            received,
                            c.fields
                        ])
                        .map_err(sql)?;
                    for t in &c.tokens {
                        token
                            .execute(rusqlite::params![t, ev.seq as i64])
                            .map_err(sql)?;
                    }
                }
                let session_prev = str_at(&v, &["session_prev_hash"])
                    .and_then(agentrail_event::hash::from_hex)
                    .map(|h| h.to_vec());
                ins.execute(rusqlite::params![
                    ev.seq as i64,
                    &ev.hash[..],
                    str_at(&v, &["event_id"]).unwrap_or_default(),
                    event_type,
                    str_at(&v, &["session_id"]),
                    v.get("session_seq").and_then(Value::as_i64),
                    session_prev,
                    str_at(&v, &["agent_id"]),
                    str_at(&v, &["actor", "id"]),
                    str_at(&v, &["actor", "type"]),
                    str_at(&v, &["subject_id"]),
                    str_at(&v, &["occurred_at"]).and_then(ts_ns),
                    received,
                    tool_name,
                    outcome,
                    str_at(&v, &["data_classification"]),
                    provider,
                    model,
                    version,
                    decision,
                    reviewer,
                    latency,
                    proposed,
                    v.get("clock_skew_ms").and_then(Value::as_i64),
                ])
                .map_err(sql)?;
                let event_id = str_at(&v, &["event_id"]).unwrap_or_default();
                resolve.execute([event_id]).map_err(sql)?;
                if let Some(causes) = v.get("caused_by").and_then(Value::as_array) {
                    for c in causes {
                        let parent = str_at(c, &["event_id"]).unwrap_or_default();
                        let hash = str_at(c, &["hash"])
                            .and_then(agentrail_event::hash::from_hex)
                            .map(|h| h.to_vec());
                        cause
                            .execute(rusqlite::params![ev.seq as i64, parent, hash])
                            .map_err(sql)?;
                        if event_type == "tool.invocation" {
                            rejected_by_cause
                                .execute(rusqlite::params![ev.seq as i64, parent])
                                .map_err(sql)?;
                        }
                        if !known.exists([parent]).map_err(sql)? {
                            dangle
                                .execute(rusqlite::params![ev.seq as i64, parent])
                                .map_err(sql)?;
                        }
                    }
                }
                if event_type == "human.review"
                    && str_at(payload, &["decision"]) == Some("reject")
                    && let Some(decision) = &proposed
                {
                    rejected_by_review
                        .execute(rusqlite::params![decision, event_id])
                        .map_err(sql)?;
                }
                let seq = ev.seq as i64;
                let named: Vec<(&str, i64)> = match event_type {
                    "model.decision" => payload
                        .get("decision")
                        .and_then(|d| d.get("tool_call_ids"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c.as_str().map(|c| (c, 0)))
                        .collect(),
                    "tool.invocation" => str_at(payload, &["call_id"])
                        .map(|c| (c, 1))
                        .into_iter()
                        .collect(),
                    "human.review" => str_at(payload, &["proposed_action", "tool_call_id"])
                        .map(|c| (c, 2))
                        .into_iter()
                        .collect(),
                    _ => Vec::new(),
                };
                for (call_id, role) in named {
                    call.execute(params![scope, call_id, role, seq])
                        .map_err(sql)?;
                    let first: Option<(i64, String)> = decision_for
                        .query_row(params![scope, call_id], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                        .map_err(sql)?;
                    let Some((decision_seq, decision_id)) = first else {
                        continue;
                    };
                    match role {
                        // This decision links what named its call before it arrived.
                        0 if decision_seq == seq => {
                            let rows: Vec<(i64, i64, String, Option<String>)> = waiting
                                .query_map(params![scope, call_id], |r| {
                                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                                })
                                .map_err(sql)?
                                .collect::<rusqlite::Result<_>>()
                                .map_err(sql)?;
                            for (role, other, other_id, review) in rows {
                                if role == 1 {
                                    derived.execute(params![other, decision_id]).map_err(sql)?;
                                    rejected_by_cause
                                        .execute(params![other, decision_id])
                                        .map_err(sql)?;
                                } else if propose
                                    .execute(params![other, decision_id])
                                    .map_err(sql)?
                                    > 0
                                    && review.as_deref() == Some("reject")
                                {
                                    rejected_by_review
                                        .execute(params![decision_id, other_id])
                                        .map_err(sql)?;
                                }
                            }
                        }
                        1 if decision_seq != seq => {
                            derived.execute(params![seq, decision_id]).map_err(sql)?;
                            rejected_by_cause
                                .execute(params![seq, decision_id])
                                .map_err(sql)?;
                        }
                        _ => {}
                    }
                }
                if event_type == "tool.invocation"
                    && let (Some(tool), Some(occurred)) = (
                        str_at(payload, &["tool", "name"]),
                        str_at(&v, &["occurred_at"]).and_then(ts_ns),
                    )
                {
                    let failed = str_at(payload, &["status", "outcome"]) != Some("ok");
                    minute
                        .execute(rusqlite::params![
                            tool,
                            occurred.div_euclid(60_000_000_000),
                            i64::from(failed),
                            ev.seq as i64
                        ])
                        .map_err(sql)?;
                }
                if let Some(attrs) = v.get("attributes").and_then(Value::as_object) {
                    for (k, val) in attrs {
                        let text = match val {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        attr.execute(rusqlite::params![k, text, ev.seq as i64])
                            .map_err(sql)?;
                    }
                }
                expect += 1;
            }
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'applied'",
                params![expect as i64],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        self.applied += events.len() as u64;
        if self.wal_dirty {
            self.truncate_wal(1)?;
        }
        Ok(())
    }

    /// Applies everything the ledger holds beyond what the index has; returns how many events.
    pub fn catch_up(&mut self, ledger: &Ledger) -> Result<u64, IndexError> {
        self.catch_up_with_progress(ledger, &mut |_, _| {})
    }

    /// [`TenantIndex::catch_up`], calling `progress(events applied, ledger size)` after each
    /// batch.
    pub fn catch_up_with_progress(
        &mut self,
        ledger: &Ledger,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<u64, IndexError> {
        let size = ledger.size(&self.tenant)?;
        if size < self.applied {
            return Err(IndexError::Ahead {
                tenant: self.tenant.to_string(),
                applied: self.applied,
                ledger: size,
            });
        }
        let start = self.applied;
        while self.applied < size {
            let batch = ledger.read_range(&self.tenant, self.applied, 4096)?;
            if batch.is_empty() {
                break;
            }
            self.apply(&batch)?;
            progress(self.applied, size);
        }
        Ok(self.applied - start)
    }

    /// Drops the content (and tokens) of events received before `before_ns`, and of every event
    /// applied later that was received before it. Cutoffs only move forward.
    pub fn purge_content(&mut self, before_ns: i64) -> Result<u64, IndexError> {
        self.purge(Cutoffs {
            content_ns: before_ns,
            events_ns: self.cutoffs.events_ns,
        })
        .map(|p| p.content)
    }

    /// Applies retention cutoffs: content before `c.content_ns`, whole rows before
    /// `c.events_ns`, now and for events applied later (also after a rebuild: the cutoffs are
    /// kept). Cutoffs only move forward. Deleted rows are overwritten (`secure_delete`) and the
    /// write-ahead log is truncated, so the purged content is gone from the files too.
    pub fn purge(&mut self, c: Cutoffs) -> Result<Purged, IndexError> {
        let sql = |e: rusqlite::Error| IndexError::sql("purge the index", e);
        let new = Cutoffs {
            content_ns: c.content_ns.max(self.cutoffs.content_ns).max(c.events_ns),
            events_ns: c.events_ns.max(self.cutoffs.events_ns),
        };
        let tx = self.conn.transaction().map_err(sql)?;
        // received_at never decreases along seq, so "received before" is a seq prefix.
        let bound = |ns: i64| -> Result<i64, IndexError> {
            tx.query_row(
                "SELECT coalesce(min(seq), (SELECT value FROM meta WHERE key = 'applied'))
                 FROM events WHERE received_ns >= ?1",
                [ns],
                |r| r.get(0),
            )
            .map_err(sql)
        };
        let content_bound = bound(new.content_ns)?;
        tx.execute("DELETE FROM tokens WHERE seq < ?1", [content_bound])
            .map_err(sql)?;
        let content = tx
            .execute("DELETE FROM content WHERE seq < ?1", [content_bound])
            .map_err(sql)? as u64;
        let mut events = 0;
        if new.events_ns > self.cutoffs.events_ns {
            let b = bound(new.events_ns)?;
            for q in [
                "DELETE FROM causes WHERE child_seq < ?1",
                "DELETE FROM tool_calls WHERE seq < ?1",
                "DELETE FROM dangling WHERE child_seq < ?1",
                "DELETE FROM rejected_executions WHERE seq < ?1",
                "DELETE FROM attrs WHERE seq < ?1",
                "DELETE FROM tool_minutes WHERE first_seq < ?1",
            ] {
                tx.execute(q, [b]).map_err(sql)?;
            }
            events = tx
                .execute("DELETE FROM events WHERE seq < ?1", [b])
                .map_err(sql)? as u64;
        }
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'content_cutoff_ns'",
            [new.content_ns],
        )
        .map_err(sql)?;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'events_cutoff_ns'",
            [new.events_ns],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        self.cutoffs = new;
        if content + events > 0 || self.wal_dirty {
            self.truncate_wal(20)?;
        }
        Ok(Purged { content, events })
    }

    /// Drops the content and tokens of one data subject (`None`: of every event), after its
    /// keys were shredded; the source no longer opens them, so nothing comes back on a
    /// rebuild. Returns how many events lost their content.
    pub fn erase_content(&mut self, subject: Option<&str>) -> Result<u64, IndexError> {
        match subject {
            Some(s) => self.erase_subjects(&[s.to_owned()]),
            None => {
                let sql = |e: rusqlite::Error| IndexError::sql("erase content from the index", e);
                let tx = self.conn.transaction().map_err(sql)?;
                tx.execute("DELETE FROM tokens", []).map_err(sql)?;
                let n = tx.execute("DELETE FROM content", []).map_err(sql)?;
                tx.commit().map_err(sql)?;
                self.truncate_wal(20)?;
                Ok(n as u64)
            }
        }
    }

    /// Drops the content and tokens of these data subjects, in one transaction.
    fn erase_subjects(&mut self, subjects: &[String]) -> Result<u64, IndexError> {
        let sql = |e: rusqlite::Error| IndexError::sql("erase content from the index", e);
        let tx = self.conn.transaction().map_err(sql)?;
        let mut n = 0;
        {
            let mut tokens = tx
                .prepare_cached(
                    "DELETE FROM tokens WHERE seq IN (SELECT seq FROM content WHERE subject_id = ?1)",
                )
                .map_err(sql)?;
            let mut content = tx
                .prepare_cached("DELETE FROM content WHERE subject_id = ?1")
                .map_err(sql)?;
            for s in subjects {
                tokens.execute([s]).map_err(sql)?;
                n += content.execute([s]).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        if n > 0 {
            self.truncate_wal(20)?;
        }
        Ok(n as u64)
    }

    /// Copies the write-ahead log into the database and empties it, so that overwritten
    /// (deleted) content is not left in old log frames. Readers still on an older snapshot can
    /// hold the log: after `attempts` tries it is left to the next apply (`wal_dirty`).
    fn truncate_wal(&mut self, attempts: u64) -> Result<(), IndexError> {
        for attempt in 0..attempts {
            let busy: i64 = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .map_err(|e| IndexError::sql("checkpoint the index", e))?;
            if busy == 0 {
                self.wal_dirty = false;
                return Ok(());
            }
            if attempt + 1 < attempts {
                std::thread::sleep(std::time::Duration::from_millis(5 * (attempt + 1)));
            }
        }
        self.wal_dirty = true;
        Ok(())
    }

    /// Bytes the index takes on disk (database and write-ahead log).
    pub fn size_on_disk(&self) -> u64 {
        ["", "-wal"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{}{s}", self.path.display())).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Hex of a stored hash column.
    pub(crate) fn hex(blob: &[u8]) -> String {
        let mut h = [0u8; 32];
        if blob.len() == 32 {
            h.copy_from_slice(blob);
        }
        to_hex(&h)
    }
}

/// Deletes a tenant's index and rebuilds it from the ledger. The retention cutoffs of the old
/// index (if it still opens, and `keep_old_cutoffs`) or the source's, whichever are further,
/// are kept; `source` opens sealed content (see [`TenantIndex::set_source`]). Without
/// `keep_old_cutoffs` only the source's apply: how rows a wrong run purged come back.
pub fn reindex(
    ledger: &Ledger,
    data_dir: &Path,
    tenant: &TenantId,
    source: Option<Arc<dyn IndexSource>>,
    keep_old_cutoffs: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<TenantIndex, IndexError> {
    let path = index_path(data_dir, tenant);
    let old = if path.exists() && keep_old_cutoffs {
        // A damaged index is what a rebuild is for: its cutoffs are then the source's.
        TenantIndex::open_at(&path, tenant)
            .map(|ix| ix.cutoffs())
            .unwrap_or_default()
    } else {
        Cutoffs::default()
    };
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| IndexError::Io { path: p, source: e })?;
        }
    }
    let mut idx = TenantIndex::open_at(&path, tenant)?;
    idx.purge(old)?;
    idx.set_source(source)?;
    idx.catch_up_with_progress(ledger, progress)?;
    Ok(idx)
}
