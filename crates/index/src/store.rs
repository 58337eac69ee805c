//! The per-tenant query store: one SQLite database per tenant under
//! `<data-dir>/tenants/<id>/index/index.sqlite`, fed from the ledger in seq order. It records how
//! far it has applied the ledger in the same transaction as the rows, so it is always a prefix of
//! the ledger; deleting it and catching up rebuilds it.

use crate::db::{Db, DbError, SqliteDb, Val};
use crate::error::IndexError;
use agentrail_event::TenantId;
use agentrail_event::hash::to_hex;
use agentrail_ledger::layout::DataDir;
use agentrail_ledger::{Ledger, StoredEvent};
use serde_json::Value;
use std::collections::HashSet;
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

/// The tables that hold a copy of an event's sensitive content (tokenized).
pub const CONTENT_TABLES: &[&str] = &["content", "tokens"];

/// Every table of the store, children before `events` (the order purges delete in).
pub const TABLES: &[&str] = &[
    "causes",
    "tool_calls",
    "dangling",
    "rejected_executions",
    "attrs",
    "tool_minutes",
    "content",
    "tokens",
    "events",
    "meta",
];

/// Where every tenant's query store lives: the embedded SQLite files of a data directory, or a
/// shared database (`agentrail-pgindex`). The service opens indexes only through this.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Opens (creating if needed) a tenant's index.
    fn open(&self, tenant: &TenantId) -> Result<TenantIndex, IndexError>;
    /// Takes a tenant's index out of the way so the next open starts empty: a damaged one is
    /// kept aside where the engine can (`keep`), else its rows are deleted. Returns where it
    /// went, if anywhere.
    fn discard(&self, tenant: &TenantId, keep: bool) -> Result<Option<String>, IndexError>;
    /// What it is, for logs and `/readyz` (never a password).
    fn describe(&self) -> String;
}

/// The embedded default: one SQLite file per tenant under `<data-dir>/tenants/<id>/index/`.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    data_dir: PathBuf,
}

impl SqliteStore {
    pub fn new(data_dir: &Path) -> SqliteStore {
        SqliteStore {
            data_dir: data_dir.to_path_buf(),
        }
    }
}

impl Store for SqliteStore {
    fn open(&self, tenant: &TenantId) -> Result<TenantIndex, IndexError> {
        TenantIndex::open(&self.data_dir, tenant)
    }

    fn discard(&self, tenant: &TenantId, keep: bool) -> Result<Option<String>, IndexError> {
        if keep {
            return Ok(move_aside(&self.data_dir, tenant)?.map(|p| p.display().to_string()));
        }
        remove_files(&index_path(&self.data_dir, tenant))?;
        Ok(None)
    }

    fn describe(&self) -> String {
        format!("sqlite files under {}", self.data_dir.display())
    }
}

/// The query store of one tenant.
pub struct TenantIndex {
    pub(crate) db: Box<dyn Db>,
    pub(crate) tenant: TenantId,
    applied: u64,
    source: Option<Arc<dyn IndexSource>>,
    cutoffs: Cutoffs,
    /// The ledger the rows come from ([`ledger_mark`]), once a caller named it.
    ledger: Option<i64>,
    /// A purge or erasure could not scrub the engine's files yet (SQLite readers held the
    /// write-ahead log): the next apply tries again, so deleted content does not stay there.
    scrub_pending: bool,
}

impl std::fmt::Debug for TenantIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TenantIndex({} in {})", self.tenant, self.db.describe())
    }
}

/// Where a tenant's index lives.
pub fn index_path(data_dir: &Path, tenant: &TenantId) -> PathBuf {
    DataDir::new(data_dir).tenant(tenant).index_db()
}

fn remove_files(path: &Path) -> Result<(), IndexError> {
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(IndexError::Io { path: p, source: e }),
        }
    }
    Ok(())
}

/// Moves a damaged index out of the way (to `index.sqlite.damaged`, replacing an older one) and
/// removes its write-ahead log and shared memory, so the next open starts an empty index.
/// Returns where it went, if there was one.
pub fn move_aside(data_dir: &Path, tenant: &TenantId) -> Result<Option<PathBuf>, IndexError> {
    let tp = DataDir::new(data_dir).tenant(tenant);
    let (db, aside) = (tp.index_db(), tp.index_damaged());
    let moved = match std::fs::rename(&db, &aside) {
        Ok(()) => Some(aside),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(IndexError::Io {
                path: db,
                source: e,
            });
        }
    };
    remove_files(&db)?;
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

/// A seq as a parameter.
fn int(i: u64) -> Val {
    Val::Int(i as i64)
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

    /// Opens (creating if needed) an SQLite index database at `path`.
    pub fn open_at(path: &Path, tenant: &TenantId) -> Result<TenantIndex, IndexError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| IndexError::Io {
                path: path.to_path_buf(),
                source: e,
            })?;
        }
        let sql = |e: DbError| IndexError::sql("open the index", e);
        // Derived data: a crash may lose the last transactions (WAL, synchronous=NORMAL), never
        // consistency; the next catch-up re-applies them from the ledger.
        let db = SqliteDb::open(
            path,
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY;
             PRAGMA cache_size=-65536; PRAGMA foreign_keys=OFF; PRAGMA secure_delete=ON;",
        )
        .map_err(sql)?;
        let version = match db.query("SELECT value FROM meta WHERE key = 'schema_version'", &[]) {
            Ok(rows) => match rows.first() {
                Some(r) => Some(r[0].int().map_err(sql)?),
                None => None,
            },
            // A brand-new database has no meta table yet.
            Err(e) if e.message.contains("no such table") => None,
            Err(e) => return Err(sql(e)),
        };
        if version.is_some_and(|v| v != SCHEMA_VERSION) {
            drop(db);
            remove_files(path)?;
            return TenantIndex::open_at(path, tenant);
        }
        db.execute_batch(SCHEMA).map_err(sql)?;
        db.execute(
            "INSERT INTO meta(key, value) VALUES ('schema_version', ?1) ON CONFLICT DO NOTHING",
            &[Val::Int(SCHEMA_VERSION)],
        )
        .map_err(sql)?;
        TenantIndex::with_db(Box::new(db), tenant)
    }

    /// The index of `tenant` in a database whose schema is in place: reads how far it has
    /// applied the ledger and its retention cutoffs (none yet: a new tenant).
    pub fn with_db(db: Box<dyn Db>, tenant: &TenantId) -> Result<TenantIndex, IndexError> {
        let mut ix = TenantIndex {
            db,
            tenant: tenant.clone(),
            applied: 0,
            source: None,
            cutoffs: Cutoffs::default(),
            ledger: None,
            scrub_pending: false,
        };
        let meta = ix.read("open the index", |db| read_meta(db))?;
        ix.applied = u64::try_from(meta.0).unwrap_or(0);
        ix.cutoffs = meta.1;
        Ok(ix)
    }

    /// Names the ledger this index is fed from ([`ledger_mark`]): the first apply records it,
    /// and every apply refuses a store whose rows for this tenant came from another ledger (two
    /// deployments pointed at one shared database with the same tenant id).
    pub fn bind_ledger(&mut self, mark: i64) {
        self.ledger = Some(mark);
    }

    /// Runs `f` in a transaction (read or `write`), committed when it succeeds.
    fn tx<T>(
        &self,
        write: bool,
        op: &'static str,
        f: impl FnOnce(&dyn Db) -> Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        self.db.begin(write).map_err(|e| IndexError::sql(op, e))?;
        match f(&*self.db) {
            Ok(v) => {
                self.db.commit().map_err(|e| IndexError::sql(op, e))?;
                Ok(v)
            }
            Err(e) => {
                self.db.rollback();
                Err(e)
            }
        }
    }

    /// Runs queries in one read transaction: one snapshot of the store.
    pub(crate) fn read<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&dyn Db) -> Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        self.tx(false, op, f)
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

    /// Where the index is (a file, or a database and tenant), for messages.
    pub fn describe(&self) -> String {
        self.db.describe()
    }

    /// The next seq to apply: the index holds exactly the ledger's events `[0, applied)`.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// How far the store itself says it has applied the ledger, read now: a read-only node
    /// learns there what the writing node has applied since.
    pub fn stored_applied(&self) -> Result<u64, IndexError> {
        let (applied, _) = self.read("read the index", |db| read_meta(db))?;
        Ok(u64::try_from(applied).unwrap_or(0))
    }

    /// Applies stored events, which must continue exactly at what the store has applied, in
    /// one transaction. Events the store already holds (a commit whose answer was lost with
    /// the connection) are skipped, so nothing is applied twice; if the store holds less than
    /// [`TenantIndex::applied`] said (its last commits were lost in a crash), nothing is
    /// applied and `applied` goes back to what it holds, where a catch-up continues.
    pub fn apply(&mut self, events: &[StoredEvent]) -> Result<(), IndexError> {
        let applied = self.tx(true, "apply events", |db| {
            let (stored, _) = read_meta(db)?;
            if let Some(mark) = self.ledger {
                match read_ledger_mark(db)? {
                    Some(m) if m != mark => {
                        return Err(IndexError::OtherLedger {
                            tenant: self.tenant.to_string(),
                            store: db.describe(),
                        });
                    }
                    Some(_) => {}
                    None => {
                        set_meta(db, "ledger", mark)
                            .map_err(|e| IndexError::sql("apply events", e))?;
                    }
                }
            }
            let start = u64::try_from(stored).unwrap_or(0);
            if let Some(first) = events.first()
                && first.seq > start
                && first.seq == self.applied
            {
                // The store lost its last commits (PostgreSQL acknowledges before its disk
                // when synchronous_commit is off, and crashed): continue from what it holds.
                return Ok(start);
            }
            let skip = events.iter().take_while(|e| e.seq < start).count();
            self.apply_in(db, start, &events[skip..])
        })?;
        let before = self.applied;
        self.applied = applied;
        self.db
            .grew(before, applied)
            .map_err(|e| IndexError::sql("refresh the index's statistics", e))?;
        if self.scrub_pending {
            self.scrub(1)?;
        }
        Ok(())
    }

    /// [`TenantIndex::apply`] inside its transaction: returns the new applied mark.
    fn apply_in(&self, db: &dyn Db, start: u64, events: &[StoredEvent]) -> Result<u64, IndexError> {
        let sql = |e: DbError| IndexError::sql("apply events", e);
        let d = db.dialect();
        let ins = "INSERT INTO events (seq, hash, event_id, event_type, session_id, session_seq,
                session_prev_hash, agent_id, actor_id, actor_type, subject_id, occurred_ns,
                received_ns, tool_name, outcome, classification, model_provider, model_name,
                model_version, review_decision, reviewer_id, review_latency_ms,
                proposed_event_id, clock_skew_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)";
        let cause = "INSERT INTO causes (child_seq, parent_event_id, parent_hash)
             VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";
        let attr = "INSERT INTO attrs (key, value, seq) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";
        let dangle = "INSERT INTO dangling (child_seq, parent_event_id) VALUES (?1, ?2)
             ON CONFLICT DO NOTHING";
        let resolve = "DELETE FROM dangling WHERE parent_event_id = ?1";
        // A tool call caused by a rejected decision, whichever of the two arrives last.
        let rejected_by_cause =
            "INSERT INTO rejected_executions (seq, decision_event_id, review_event_id)
             SELECT CAST(?1 AS BIGINT), r.proposed_event_id, r.event_id FROM events r
             WHERE r.proposed_event_id = ?2 AND r.review_decision = 'reject'
             ON CONFLICT DO NOTHING";
        let rejected_by_review =
            "INSERT INTO rejected_executions (seq, decision_event_id, review_event_id)
             SELECT c.child_seq, CAST(?1 AS TEXT), CAST(?2 AS TEXT)
             FROM causes c JOIN events t ON t.seq = c.child_seq
             WHERE c.parent_event_id = ?1 AND t.event_type = 'tool.invocation'
             ON CONFLICT DO NOTHING";
        let minute = format!(
            "INSERT INTO tool_minutes (tool, minute, calls, errors, first_seq)
             VALUES (?1, ?2, 1, ?3, ?4)
             ON CONFLICT {} DO UPDATE SET calls = tool_minutes.calls + 1,
               errors = tool_minutes.errors + excluded.errors,
               first_seq = {}",
            d.key("minute, tool"),
            d.least("tool_minutes.first_seq", "excluded.first_seq")
        );
        let content = format!(
            "INSERT INTO content (seq, subject_id, received_ns, fields) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT {} DO UPDATE SET subject_id = excluded.subject_id,
               received_ns = excluded.received_ns, fields = excluded.fields",
            d.key("seq")
        );
        let token = "INSERT INTO tokens (token, seq) VALUES (?1, ?2) ON CONFLICT DO NOTHING";
        let call = "INSERT INTO tool_calls (scope, call_id, role, seq) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING";
        // The first decision in the scope that asked for a call.
        let decision_for =
            "SELECT e.seq, e.event_id FROM tool_calls t JOIN events e ON e.seq = t.seq
             WHERE t.scope = ?1 AND t.call_id = ?2 AND t.role = 0 ORDER BY t.seq LIMIT 1";
        // Invocations, then reviews, that named a call before its decision arrived.
        let waiting = "SELECT t.role, e.seq, e.event_id, e.review_decision
             FROM tool_calls t JOIN events e ON e.seq = t.seq
             WHERE t.scope = ?1 AND t.call_id = ?2 AND t.role > 0 ORDER BY t.role, t.seq";
        let derived = "INSERT INTO causes (child_seq, parent_event_id, parent_hash, via)
             VALUES (?1, ?2, NULL, 'tool_call_id') ON CONFLICT DO NOTHING";
        let propose = "UPDATE events SET proposed_event_id = ?2
             WHERE seq = ?1 AND proposed_event_id IS NULL";
        let first_decision =
            |scope: &str, call_id: &str| -> Result<Option<(i64, String)>, IndexError> {
                let rows = db
                    .query(decision_for, &[Val::text(scope), Val::text(call_id)])
                    .map_err(sql)?;
                match rows.first() {
                    Some(r) => Ok(Some((
                        r[0].int().map_err(sql)?,
                        r[1].string().map_err(sql)?,
                    ))),
                    None => Ok(None),
                }
            };
        // Which causes named in the batch the store holds already, in one query per 500 (not
        // one per link: PostgreSQL pipelines the writes of a batch only between reads); with
        // the events the batch inserts, that answers "is the cause known" for every link.
        let parsed: Vec<Value> = events
            .iter()
            .map(|ev| {
                let bad = |reason: String| IndexError::Apply {
                    seq: ev.seq,
                    reason,
                };
                let body = std::str::from_utf8(&ev.bytes)
                    .map_err(|_| bad("stored event is not UTF-8".into()))?;
                serde_json::from_str(body).map_err(|e| bad(format!("stored event: {e}")))
            })
            .collect::<Result<_, IndexError>>()?;
        let mut parents: Vec<&str> = parsed
            .iter()
            .filter_map(|v| v.get("caused_by").and_then(Value::as_array))
            .flatten()
            .filter_map(|c| str_at(c, &["event_id"]))
            .collect();
        parents.sort_unstable();
        parents.dedup();
        let mut known: HashSet<String> = HashSet::new();
        for chunk in parents.chunks(500) {
            // Three statement shapes, not one per length: padded with the last id again.
            let width = [8, 64, 500]
                .into_iter()
                .find(|w| *w >= chunk.len())
                .unwrap_or(500);
            let mut ids: Vec<Val> = chunk.iter().map(|p| Val::text(p)).collect();
            ids.resize(width, ids.last().cloned().unwrap_or(Val::Null));
            let marks = vec!["?"; width].join(", ");
            let rows = db
                .query(
                    &format!("SELECT event_id FROM events WHERE event_id IN ({marks})"),
                    &ids,
                )
                .map_err(sql)?;
            for r in rows {
                known.insert(r[0].string().map_err(sql)?);
            }
        }
        let mut expect = start;
        for (ev, v) in events.iter().zip(&parsed) {
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
            let event_type = str_at(v, &["event_type"]).unwrap_or_default();
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
            let scope = str_at(v, &["trace", "trace_id"])
                .or_else(|| str_at(v, &["session_id"]))
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
                        (None, Some(call_id)) => first_decision(scope, call_id)?.map(|(_, id)| id),
                        (None, None) => None,
                    },
                )
            } else {
                (None, None, None, None)
            };
            let received = str_at(v, &["received_at"])
                .and_then(ts_ns)
                .ok_or_else(|| bad("stored event has no valid received_at".into()))?;
            if received < self.cutoffs.events_ns {
                // Beyond the tenant's retention: the ledger keeps it, the index does not.
                expect += 1;
                continue;
            }
            let seq = int(ev.seq);
            if received >= self.cutoffs.content_ns
                && let Some(src) = &self.source
                && let Some(c) = src.content(&self.tenant, v)
            {
                db.defer(
                    &content,
                    &[
                        seq.clone(),
                        str_at(v, &["subject_id"]).into(),
                        Val::Int(received),
                        Val::Text(c.fields),
                    ],
                )
                .map_err(sql)?;
                for t in &c.tokens {
                    db.defer(token, &[Val::text(t), seq.clone()]).map_err(sql)?;
                }
            }
            let session_prev: Val = str_at(v, &["session_prev_hash"])
                .and_then(agentrail_event::hash::from_hex)
                .map(|h| h.to_vec())
                .into();
            let event_id = str_at(v, &["event_id"]).unwrap_or_default();
            db.defer(
                ins,
                &[
                    seq.clone(),
                    Val::from(&ev.hash[..]),
                    event_id.into(),
                    event_type.into(),
                    str_at(v, &["session_id"]).into(),
                    v.get("session_seq").and_then(Value::as_i64).into(),
                    session_prev,
                    str_at(v, &["agent_id"]).into(),
                    str_at(v, &["actor", "id"]).into(),
                    str_at(v, &["actor", "type"]).into(),
                    str_at(v, &["subject_id"]).into(),
                    str_at(v, &["occurred_at"]).and_then(ts_ns).into(),
                    Val::Int(received),
                    tool_name.into(),
                    outcome.into(),
                    str_at(v, &["data_classification"]).into(),
                    provider.into(),
                    model.into(),
                    version.into(),
                    decision.into(),
                    reviewer.into(),
                    latency.into(),
                    proposed.clone().into(),
                    v.get("clock_skew_ms").and_then(Value::as_i64).into(),
                ],
            )
            .map_err(sql)?;
            db.defer(resolve, &[event_id.into()]).map_err(sql)?;
            known.insert(event_id.to_owned());
            if let Some(causes) = v.get("caused_by").and_then(Value::as_array) {
                for c in causes {
                    let parent = str_at(c, &["event_id"]).unwrap_or_default();
                    let hash: Val = str_at(c, &["hash"])
                        .and_then(agentrail_event::hash::from_hex)
                        .map(|h| h.to_vec())
                        .into();
                    db.defer(cause, &[seq.clone(), parent.into(), hash])
                        .map_err(sql)?;
                    if event_type == "tool.invocation" {
                        db.defer(rejected_by_cause, &[seq.clone(), parent.into()])
                            .map_err(sql)?;
                    }
                    if !known.contains(parent) {
                        db.defer(dangle, &[seq.clone(), parent.into()])
                            .map_err(sql)?;
                    }
                }
            }
            if event_type == "human.review"
                && str_at(payload, &["decision"]) == Some("reject")
                && let Some(decision) = &proposed
            {
                db.defer(rejected_by_review, &[Val::text(decision), event_id.into()])
                    .map_err(sql)?;
            }
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
                db.defer(
                    call,
                    &[scope.into(), call_id.into(), Val::Int(role), seq.clone()],
                )
                .map_err(sql)?;
                let Some((decision_seq, decision_id)) = first_decision(scope, call_id)? else {
                    continue;
                };
                let this = ev.seq as i64;
                match role {
                    // This decision links what named its call before it arrived.
                    0 if decision_seq == this => {
                        let rows = db
                            .query(waiting, &[scope.into(), call_id.into()])
                            .map_err(sql)?;
                        for r in rows {
                            let (role, other, other_id, review) = (
                                r[0].int().map_err(sql)?,
                                Val::Int(r[1].int().map_err(sql)?),
                                r[2].string().map_err(sql)?,
                                r[3].opt_string().map_err(sql)?,
                            );
                            let decision = Val::text(&decision_id);
                            if role == 1 {
                                db.defer(derived, &[other.clone(), decision.clone()])
                                    .map_err(sql)?;
                                db.defer(rejected_by_cause, &[other, decision])
                                    .map_err(sql)?;
                            } else if db
                                .execute(propose, &[other, decision.clone()])
                                .map_err(sql)?
                                > 0
                                && review.as_deref() == Some("reject")
                            {
                                db.defer(rejected_by_review, &[decision, other_id.into()])
                                    .map_err(sql)?;
                            }
                        }
                    }
                    1 if decision_seq != this => {
                        let decision = Val::text(&decision_id);
                        db.defer(derived, &[seq.clone(), decision.clone()])
                            .map_err(sql)?;
                        db.defer(rejected_by_cause, &[seq.clone(), decision])
                            .map_err(sql)?;
                    }
                    _ => {}
                }
            }
            if event_type == "tool.invocation"
                && let (Some(tool), Some(occurred)) = (
                    str_at(payload, &["tool", "name"]),
                    str_at(v, &["occurred_at"]).and_then(ts_ns),
                )
            {
                let failed = str_at(payload, &["status", "outcome"]) != Some("ok");
                db.defer(
                    &minute,
                    &[
                        tool.into(),
                        Val::Int(occurred.div_euclid(60_000_000_000)),
                        Val::Int(i64::from(failed)),
                        seq.clone(),
                    ],
                )
                .map_err(sql)?;
            }
            if let Some(attrs) = v.get("attributes").and_then(Value::as_object) {
                for (k, val) in attrs {
                    let text = match val {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    db.defer(attr, &[Val::text(k), Val::Text(text), seq.clone()])
                        .map_err(sql)?;
                }
            }
            expect += 1;
        }
        set_meta(db, "applied", expect as i64).map_err(sql)?;
        Ok(expect)
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
        self.bind_ledger(ledger_mark(ledger, &self.tenant));
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
    /// kept). Cutoffs only move forward. Deleted rows are overwritten (SQLite `secure_delete`
    /// and a truncated write-ahead log; PostgreSQL `VACUUM`), so the purged content is gone
    /// from the files too.
    pub fn purge(&mut self, c: Cutoffs) -> Result<Purged, IndexError> {
        let sql = |e: DbError| IndexError::sql("purge the index", e);
        let new = Cutoffs {
            content_ns: c.content_ns.max(self.cutoffs.content_ns).max(c.events_ns),
            events_ns: c.events_ns.max(self.cutoffs.events_ns),
        };
        let old = self.cutoffs;
        let purged = self.tx(true, "purge the index", |db| {
            let (_, stored) = read_meta(db)?;
            let prev = Cutoffs {
                content_ns: old.content_ns.max(stored.content_ns),
                events_ns: old.events_ns.max(stored.events_ns),
            };
            let new = Cutoffs {
                content_ns: new.content_ns.max(prev.content_ns),
                events_ns: new.events_ns.max(prev.events_ns),
            };
            // received_at never decreases along seq, so "received before" is a seq prefix.
            let bound = |ns: i64| -> Result<Val, IndexError> {
                let rows = db
                    .query(
                        "SELECT coalesce(min(seq), (SELECT value FROM meta WHERE key = 'applied'), 0)
                         FROM events WHERE received_ns >= ?1",
                        &[Val::Int(ns)],
                    )
                    .map_err(sql)?;
                Ok(Val::Int(rows.first().map_or(Ok(0), |r| r[0].int()).map_err(sql)?))
            };
            let content_bound = bound(new.content_ns)?;
            db.execute("DELETE FROM tokens WHERE seq < ?1", std::slice::from_ref(&content_bound))
                .map_err(sql)?;
            let content = db
                .execute("DELETE FROM content WHERE seq < ?1", &[content_bound])
                .map_err(sql)?;
            let mut events = 0;
            if new.events_ns > prev.events_ns {
                let b = bound(new.events_ns)?;
                for q in [
                    "DELETE FROM causes WHERE child_seq < ?1",
                    "DELETE FROM tool_calls WHERE seq < ?1",
                    "DELETE FROM dangling WHERE child_seq < ?1",
                    "DELETE FROM rejected_executions WHERE seq < ?1",
                    "DELETE FROM attrs WHERE seq < ?1",
                    "DELETE FROM tool_minutes WHERE first_seq < ?1",
                ] {
                    db.execute(q, std::slice::from_ref(&b)).map_err(sql)?;
                }
                events = db
                    .execute("DELETE FROM events WHERE seq < ?1", &[b])
                    .map_err(sql)?;
            }
            set_meta(db, "content_cutoff_ns", new.content_ns).map_err(sql)?;
            set_meta(db, "events_cutoff_ns", new.events_ns).map_err(sql)?;
            Ok((new, Purged { content, events }))
        })?;
        let (new, purged) = purged;
        self.cutoffs = new;
        if purged.content + purged.events > 0 || self.scrub_pending {
            self.scrub(20)?;
        }
        Ok(purged)
    }

    /// Drops the content and tokens of one data subject (`None`: of every event), after its
    /// keys were shredded; the source no longer opens them, so nothing comes back on a
    /// rebuild. Returns how many events lost their content.
    pub fn erase_content(&mut self, subject: Option<&str>) -> Result<u64, IndexError> {
        match subject {
            Some(s) => self.erase_subjects(&[s.to_owned()]),
            None => {
                let sql = |e: DbError| IndexError::sql("erase content from the index", e);
                let n = self.tx(true, "erase content from the index", |db| {
                    db.execute("DELETE FROM tokens", &[]).map_err(sql)?;
                    db.execute("DELETE FROM content", &[]).map_err(sql)
                })?;
                self.scrub(20)?;
                Ok(n)
            }
        }
    }

    /// Drops the content and tokens of these data subjects, in one transaction.
    fn erase_subjects(&mut self, subjects: &[String]) -> Result<u64, IndexError> {
        let sql = |e: DbError| IndexError::sql("erase content from the index", e);
        let n = self.tx(true, "erase content from the index", |db| {
            let mut n = 0;
            for s in subjects {
                db.execute(
                    "DELETE FROM tokens WHERE seq IN (SELECT seq FROM content WHERE subject_id = ?1)",
                    &[Val::text(s)],
                )
                .map_err(sql)?;
                n += db
                    .execute("DELETE FROM content WHERE subject_id = ?1", &[Val::text(s)])
                    .map_err(sql)?;
            }
            Ok(n)
        })?;
        if n > 0 {
            self.scrub(20)?;
        }
        Ok(n)
    }

    /// Leaves nothing of deleted content in the engine's files (see [`Db::scrub`]); what
    /// cannot be done now (readers hold SQLite's log) is retried with the next apply.
    fn scrub(&mut self, attempts: u64) -> Result<(), IndexError> {
        let done = self
            .db
            .scrub(CONTENT_TABLES, attempts)
            .map_err(|e| IndexError::sql("scrub deleted content", e))?;
        self.scrub_pending = !done;
        Ok(())
    }

    /// Bytes the index takes on disk (SQLite: database and write-ahead log; `None` in a
    /// shared database).
    pub fn size_on_disk(&self) -> Option<u64> {
        self.db.size_on_disk()
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

/// `(applied, cutoffs)` as the store holds them (zeros for a tenant it has never seen).
fn read_meta(db: &dyn Db) -> Result<(i64, Cutoffs), IndexError> {
    let sql = |e: DbError| IndexError::sql("read the index's state", e);
    let rows = db
        .query(
            "SELECT key, value FROM meta WHERE key IN ('applied', 'content_cutoff_ns', 'events_cutoff_ns')",
            &[],
        )
        .map_err(sql)?;
    let (mut applied, mut c) = (0, Cutoffs::default());
    for r in rows {
        let v = r[1].int().map_err(sql)?;
        match r[0].string().map_err(sql)?.as_str() {
            "applied" => applied = v,
            "content_cutoff_ns" => c.content_ns = v,
            _ => c.events_ns = v,
        }
    }
    Ok((applied, c))
}

/// The ledger mark the store holds for the tenant, if any.
fn read_ledger_mark(db: &dyn Db) -> Result<Option<i64>, IndexError> {
    let sql = |e: DbError| IndexError::sql("read the index's state", e);
    let rows = db
        .query("SELECT value FROM meta WHERE key = 'ledger'", &[])
        .map_err(sql)?;
    rows.first().map(|r| r[0].int().map_err(sql)).transpose()
}

/// A number naming the ledger a tenant's events come from: its checkpoint origin and the key
/// that signs them (so the same tenant id of another deployment differs; a restore from the
/// archive, same origin and key, does not).
pub fn ledger_mark(ledger: &Ledger, tenant: &TenantId) -> i64 {
    let h = agentrail_event::hash::sha256(
        format!("{}\n{}", ledger.origin(tenant), ledger.verifier()).as_bytes(),
    );
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    i64::from_be_bytes(b)
}

fn set_meta(db: &dyn Db, key: &str, value: i64) -> Result<u64, DbError> {
    db.execute(
        &format!(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT {} DO UPDATE SET value = excluded.value",
            db.dialect().key("key")
        ),
        &[Val::text(key), Val::Int(value)],
    )
}

/// Deletes a tenant's index and rebuilds it from the ledger. The retention cutoffs of the old
/// index (if it still opens, and `keep_old_cutoffs`) or the source's, whichever are further,
/// are kept; `source` opens sealed content (see [`TenantIndex::set_source`]). Without
/// `keep_old_cutoffs` only the source's apply: how rows a wrong run purged come back.
pub fn reindex(
    ledger: &Ledger,
    store: &dyn Store,
    tenant: &TenantId,
    source: Option<Arc<dyn IndexSource>>,
    keep_old_cutoffs: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<TenantIndex, IndexError> {
    let old = if keep_old_cutoffs {
        // A damaged index is what a rebuild is for: its cutoffs are then the source's.
        store
            .open(tenant)
            .map(|ix| ix.cutoffs())
            .unwrap_or_default()
    } else {
        Cutoffs::default()
    };
    store.discard(tenant, false)?;
    let mut idx = store.open(tenant)?;
    idx.purge(old)?;
    idx.set_source(source)?;
    idx.catch_up_with_progress(ledger, progress)?;
    Ok(idx)
}
