//! The auditor's questions, answered from one tenant's query store. Every result row carries the
//! event's `seq` and `hash`, so a client can ask the ledger for inclusion proofs of exactly what it
//! was shown. Lists are paginated with keyset cursors (a seq or a session_seq, never an offset),
//! so concurrent ingest neither repeats nor skips rows between pages.

use crate::db::{Db, DbError, Val};
use crate::error::IndexError;
use crate::store::{TenantIndex, ts_ns};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet, VecDeque};

/// The largest page a query returns.
pub const MAX_PAGE: usize = 1000;

/// One event that answers a query: where it is in the ledger and the hash it has there. The
/// index holds no copy of the event: its body is read from the ledger (checked against this
/// hash) by whoever serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRow {
    pub seq: u64,
    /// Hex SHA-256 of the stored form (the ledger's event hash).
    pub hash: String,
    pub event_id: String,
    pub event_type: String,
}

/// A page of results and the cursor of the next one (`None` at the end).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Which page: after `cursor` (from the previous page), at most `limit` items.
#[derive(Debug, Clone, Default)]
pub struct PageReq {
    pub cursor: Option<String>,
    pub limit: usize,
}

impl PageReq {
    pub fn first(limit: usize) -> PageReq {
        PageReq {
            cursor: None,
            limit,
        }
    }

    fn after(&self) -> Result<i64, IndexError> {
        match &self.cursor {
            None => Ok(-1),
            Some(c) => c
                .parse::<i64>()
                .map_err(|_| IndexError::BadQuery(format!("cursor {c:?} is not one of ours"))),
        }
    }

    fn limit(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE)
    }
}

/// Which clock a time range applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeField {
    /// The emitter's `occurred_at`.
    #[default]
    Occurred,
    /// The server's `received_at`.
    Received,
}

/// `[from, to)` on one of the clocks; either end open.
#[derive(Debug, Clone, Default)]
pub struct TimeRange {
    pub field: TimeField,
    pub from: Option<jiff::Timestamp>,
    pub to: Option<jiff::Timestamp>,
}

impl TimeRange {
    /// From RFC 3339 strings, with a clear error for bad ones.
    pub fn parse(
        field: TimeField,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<TimeRange, IndexError> {
        let p = |name: &str, s: Option<&str>| -> Result<Option<jiff::Timestamp>, IndexError> {
            s.map(|s| {
                s.parse().map_err(|_| {
                    IndexError::BadQuery(format!("{name} {s:?} is not an RFC 3339 timestamp"))
                })
            })
            .transpose()
        };
        Ok(TimeRange {
            field,
            from: p("from", from)?,
            to: p("to", to)?,
        })
    }

    fn push(&self, alias: &str, w: &mut Where) {
        let col = match self.field {
            TimeField::Occurred => "occurred_ns",
            TimeField::Received => "received_ns",
        };
        let ns = |t: jiff::Timestamp| i64::try_from(t.as_nanosecond()).unwrap_or(i64::MAX);
        if let Some(f) = self.from {
            w.push(&format!("{alias}.{col} >= ?"), Val::Int(ns(f)));
        }
        if let Some(t) = self.to {
            w.push(&format!("{alias}.{col} < ?"), Val::Int(ns(t)));
        }
    }
}

/// A WHERE clause under construction.
#[derive(Default)]
struct Where {
    clauses: Vec<String>,
    params: Vec<Val>,
}

impl Where {
    fn push(&mut self, clause: &str, v: Val) {
        self.clauses.push(clause.to_owned());
        self.params.push(v);
    }

    fn text(s: &str) -> Val {
        Val::text(s)
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            "TRUE".into()
        } else {
            self.clauses.join(" AND ")
        }
    }
}

const ROW: &str = "e.seq, e.hash, e.event_id, e.event_type";
/// Columns of [`ROW`]: a query's extra columns start here.
const ROW_COLS: usize = 4;

fn row(r: &[Val]) -> Result<EventRow, DbError> {
    Ok(EventRow {
        seq: u64::try_from(r[0].int()?).unwrap_or(0),
        hash: TenantIndex::hex(&r[1].blob()?),
        event_id: r[2].string()?,
        event_type: r[3].string()?,
    })
}

fn rows_of(rows: Vec<Vec<Val>>) -> Result<Vec<EventRow>, IndexError> {
    rows.iter().map(|r| row(r).map_err(sql_err)).collect()
}

fn sql_err(e: DbError) -> IndexError {
    IndexError::sql("query the index", e)
}

const OP: &str = "query the index";

/// Runs a keyset-paginated query over events: `extra` columns after the row columns.
fn page_of<T>(
    idx: &TenantIndex,
    from: &str,
    mut w: Where,
    req: &PageReq,
    map: impl Fn(&[Val], EventRow) -> Result<T, DbError>,
    extra: &str,
) -> Result<Page<T>, IndexError> {
    w.push("e.seq > ?", Val::Int(req.after()?));
    let limit = req.limit();
    let q = format!(
        "SELECT {ROW}{extra} FROM {from} WHERE {} ORDER BY e.seq LIMIT {}",
        w.sql(),
        limit + 1
    );
    let rows = idx.read(OP, |db| db.query(&q, &w.params).map_err(sql_err))?;
    let mut items: Vec<(u64, T)> = rows
        .iter()
        .map(|r| {
            let er = row(r)?;
            let seq = er.seq;
            Ok((seq, map(r, er)?))
        })
        .collect::<Result<_, DbError>>()
        .map_err(sql_err)?;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|(s, _)| s.to_string())
    } else {
        None
    };
    Ok(Page {
        items: items.into_iter().map(|(_, t)| t).collect(),
        next_cursor,
    })
}

// ---- session reconstruction -----------------------------------------------------------------

/// A session's events in order, with the verdict on its hash chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionResult {
    pub session_id: String,
    /// Events of the session in the index.
    pub total: u64,
    pub chain: ChainCheck,
    pub events: Vec<SessionEvent>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionEvent {
    pub session_seq: u64,
    #[serde(flatten)]
    pub row: EventRow,
}

/// Whether `session_seq` runs 0, 1, 2, … and each `session_prev_hash` is the previous event's
/// hash; if not, every break.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainCheck {
    pub unbroken: bool,
    pub breaks: Vec<ChainBreak>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChainBreak {
    /// No event holds these session_seqs.
    Missing {
        from_session_seq: u64,
        to_session_seq: u64,
    },
    /// Two events claim the same session_seq.
    Duplicate { session_seq: u64, seq: u64 },
    /// The event's session_prev_hash is not the previous event's hash.
    WrongPrevHash {
        session_seq: u64,
        seq: u64,
        expected: Option<String>,
        found: Option<String>,
    },
}

/// `(session_seq, seq, hash, session_prev_hash)` of one event of a session.
type ChainLink = (i64, i64, Vec<u8>, Option<Vec<u8>>);

impl TenantIndex {
    /// Every event of a session, in session order (paginated by session_seq), and the check of
    /// its whole chain.
    pub fn session(&self, session_id: &str, req: &PageReq) -> Result<SessionResult, IndexError> {
        let limit = req.limit();
        let after = req.after()?;
        // One snapshot: the chain check and the page see the same events.
        let (links, page) = self.read(OP, |db| {
            // The chain check reads only the small columns of every event of the session.
            let links = db
                .query(
                    "SELECT session_seq, seq, hash, session_prev_hash FROM events
                     WHERE session_id = ?1 AND session_seq IS NOT NULL ORDER BY session_seq, seq",
                    &[Val::text(session_id)],
                )
                .map_err(sql_err)?;
            let page = db
                .query(
                    &format!(
                        "SELECT {ROW}, e.session_seq FROM events e
                         WHERE e.session_id = ?1 AND e.session_seq > ?2
                         ORDER BY e.session_seq, e.seq LIMIT ?3"
                    ),
                    &[
                        Val::text(session_id),
                        Val::Int(after),
                        Val::Int((limit + 1) as i64),
                    ],
                )
                .map_err(sql_err)?;
            Ok((links, page))
        })?;
        let links: Vec<ChainLink> = links
            .iter()
            .map(|r| Ok((r[0].int()?, r[1].int()?, r[2].blob()?, r[3].opt_blob()?)))
            .collect::<Result<_, DbError>>()
            .map_err(sql_err)?;
        let mut breaks = Vec::new();
        let mut expect: i64 = 0;
        let mut prev: Option<Vec<u8>> = None;
        for (ss, seq, hash, prev_hash) in &links {
            let (ss_u, seq_u) = (*ss as u64, *seq as u64);
            if *ss < expect {
                breaks.push(ChainBreak::Duplicate {
                    session_seq: ss_u,
                    seq: seq_u,
                });
                continue;
            }
            let gap = *ss > expect;
            if gap {
                breaks.push(ChainBreak::Missing {
                    from_session_seq: expect as u64,
                    to_session_seq: ss_u - 1,
                });
            }
            // After a gap the previous hash is unknown: only contiguous links are checked.
            if !gap && prev_hash != &prev {
                breaks.push(ChainBreak::WrongPrevHash {
                    session_seq: ss_u,
                    seq: seq_u,
                    expected: prev.as_deref().map(TenantIndex::hex),
                    found: prev_hash.as_deref().map(TenantIndex::hex),
                });
            }
            prev = Some(hash.clone());
            expect = ss + 1;
        }
        let mut events: Vec<SessionEvent> = page
            .iter()
            .map(|r| {
                Ok(SessionEvent {
                    row: row(r)?,
                    session_seq: u64::try_from(r[ROW_COLS].int()?).unwrap_or(0),
                })
            })
            .collect::<Result<_, DbError>>()
            .map_err(sql_err)?;
        let next_cursor = if events.len() > limit {
            events.truncate(limit);
            events.last().map(|e| e.session_seq.to_string())
        } else {
            None
        };
        Ok(SessionResult {
            session_id: session_id.to_owned(),
            total: links.len() as u64,
            chain: ChainCheck {
                unbroken: breaks.is_empty(),
                breaks,
            },
            events,
            next_cursor,
        })
    }

    // ---- causal chains ----------------------------------------------------------------------

    fn event_by_id(db: &dyn Db, event_id: &str) -> Result<Option<EventRow>, IndexError> {
        let rows = db
            .query(
                &format!("SELECT {ROW} FROM events e WHERE e.event_id = ?1"),
                &[Val::text(event_id)],
            )
            .map_err(sql_err)?;
        Ok(rows_of(rows)?.into_iter().next())
    }

    /// One event by its event_id.
    pub fn event(&self, event_id: &str) -> Result<EventRow, IndexError> {
        self.read(OP, |db| TenantIndex::event_by_id(db, event_id))?
            .ok_or_else(|| IndexError::NotFound(format!("with event_id {event_id:?}")))
    }

    /// Walks `caused_by` from an event backwards (its causes) or forwards (its effects), up to
    /// `depth` links, never visiting an event twice (cycle-safe), at most `max_nodes` events.
    pub fn causal(
        &self,
        event_id: &str,
        direction: Direction,
        depth: u32,
        max_nodes: usize,
    ) -> Result<CausalGraph, IndexError> {
        self.read(OP, |db| {
            let root = TenantIndex::event_by_id(db, event_id)?
                .ok_or_else(|| IndexError::NotFound(format!("with event_id {event_id:?}")))?;
            TenantIndex::walk(db, root, direction, depth, max_nodes)
        })
    }

    fn walk(
        db: &dyn Db,
        root: EventRow,
        direction: Direction,
        depth: u32,
        max_nodes: usize,
    ) -> Result<CausalGraph, IndexError> {
        let event_id = root.event_id.clone();
        let mut nodes = vec![root.clone()];
        let mut seen: HashSet<String> = HashSet::from([root.event_id.clone()]);
        let mut edges = Vec::new();
        let mut dangling = Vec::new();
        let mut truncated = false;
        let mut queue: VecDeque<(EventRow, u32)> = VecDeque::from([(root, 0)]);
        let parents = "SELECT parent_event_id, parent_hash, via FROM causes WHERE child_seq = ?1
                 ORDER BY parent_event_id";
        let children = format!(
            "SELECT {ROW}, c.parent_hash, c.via FROM causes c JOIN events e ON e.seq = c.child_seq
             WHERE c.parent_event_id = ?1 ORDER BY e.seq"
        );
        while let Some((node, d)) = queue.pop_front() {
            if d >= depth {
                continue;
            }
            let next: Vec<(EventRow, Option<Vec<u8>>, Option<String>)> = match direction {
                Direction::Causes => {
                    let links = db
                        .query(parents, &[Val::Int(node.seq as i64)])
                        .map_err(sql_err)?;
                    let mut out = Vec::new();
                    for r in links {
                        let (parent, hash, via) = (
                            r[0].string().map_err(sql_err)?,
                            r[1].opt_blob().map_err(sql_err)?,
                            r[2].opt_string().map_err(sql_err)?,
                        );
                        match TenantIndex::event_by_id(db, &parent)? {
                            Some(p) => out.push((p, hash, via)),
                            None => dangling.push(DanglingLink {
                                seq: node.seq,
                                event_id: node.event_id.clone(),
                                missing_cause: parent,
                            }),
                        }
                    }
                    out
                }
                Direction::Effects => db
                    .query(&children, &[Val::text(&node.event_id)])
                    .map_err(sql_err)?
                    .iter()
                    .map(|r| {
                        Ok((
                            row(r)?,
                            r[ROW_COLS].opt_blob()?,
                            r[ROW_COLS + 1].opt_string()?,
                        ))
                    })
                    .collect::<Result<_, DbError>>()
                    .map_err(sql_err)?,
            };
            for (other, hash, via) in next {
                let (cause, effect) = match direction {
                    Direction::Causes => (&other, &node),
                    Direction::Effects => (&node, &other),
                };
                edges.push(CausalEdge {
                    cause: cause.event_id.clone(),
                    effect: effect.event_id.clone(),
                    hash_matches: hash.map(|h| TenantIndex::hex(&h) == cause.hash),
                    via,
                });
                if seen.insert(other.event_id.clone()) {
                    if nodes.len() >= max_nodes {
                        truncated = true;
                        continue;
                    }
                    nodes.push(other.clone());
                    queue.push_back((other, d + 1));
                }
            }
        }
        nodes.sort_by_key(|n| n.seq);
        Ok(CausalGraph {
            root: event_id,
            direction,
            depth,
            nodes,
            edges,
            dangling,
            truncated,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// What led to the event (follow `caused_by`).
    Causes,
    /// What the event led to.
    Effects,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CausalGraph {
    pub root: String,
    pub direction: Direction,
    pub depth: u32,
    /// Every event reached, by seq.
    pub nodes: Vec<EventRow>,
    pub edges: Vec<CausalEdge>,
    /// Links to causes that are not in the ledger.
    pub dangling: Vec<DanglingLink>,
    /// The walk stopped at the node limit.
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CausalEdge {
    pub cause: String,
    pub effect: String,
    /// Whether the hash the effect recorded for its cause is the cause's hash; `None` when the
    /// cause arrived after the effect (recorded as null) or the link is derived (`via`).
    pub hash_matches: Option<bool>,
    /// How the index knows the link when the effect's `caused_by` does not name it:
    /// `"tool_call_id"` (the decision asked for the call the invocation carries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DanglingLink {
    pub seq: u64,
    pub event_id: String,
    pub missing_cause: String,
}

// ---- overrides, models, filters ---------------------------------------------------------------

/// Which human reviews.
#[derive(Debug, Clone, Default)]
pub struct ReviewQuery {
    /// approve, reject, modify or escalate.
    pub decision: Option<String>,
    pub reviewer: Option<String>,
    pub range: TimeRange,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewRow {
    #[serde(flatten)]
    pub row: EventRow,
    pub decision: Option<String>,
    pub reviewer: Option<String>,
    pub latency_ms: Option<i64>,
    pub proposed_event_id: Option<String>,
}

/// Which model's decisions.
#[derive(Debug, Clone, Default)]
pub struct ModelQuery {
    pub name: String,
    pub version: Option<String>,
    pub range: TimeRange,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelAttribution {
    /// Decisions of the model (all versions, or the one asked for) in the range, by version.
    pub counts_by_version: Vec<VersionCount>,
    /// This page of the decisions.
    pub decisions: Vec<EventRow>,
    /// Everything the decisions of this page caused, transitively (up to 10 links).
    pub caused: Vec<EventRow>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionCount {
    pub version: Option<String>,
    pub count: u64,
}

/// Filters over all events; every field narrows the result.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub range: TimeRange,
    pub event_type: Option<String>,
    pub session_id: Option<String>,
    pub agent_id: Option<String>,
    pub actor_id: Option<String>,
    pub tool_name: Option<String>,
    pub outcome: Option<String>,
    pub classification: Option<String>,
    /// Model decisions of this model name.
    pub model_name: Option<String>,
    /// Human reviews with this decision (approve, reject, modify, escalate).
    pub review_decision: Option<String>,
    /// `attributes.<key>` equals the value (non-strings compared as their JSON text).
    pub attributes: Vec<(String, String)>,
    /// Events whose hot content holds this PII token (`tok_<type>_<id>`).
    pub token: Option<String>,
}

impl TenantIndex {
    /// Human reviews by decision, reviewer and time (of the review event).
    pub fn reviews(&self, q: &ReviewQuery, req: &PageReq) -> Result<Page<ReviewRow>, IndexError> {
        let mut w = Where::default();
        w.push("e.event_type = ?", Where::text("human.review"));
        if let Some(d) = &q.decision {
            w.push("e.review_decision = ?", Where::text(d));
        }
        if let Some(r) = &q.reviewer {
            w.push("e.reviewer_id = ?", Where::text(r));
        }
        q.range.push("e", &mut w);
        page_of(
            self,
            "events e",
            w,
            req,
            |r, row| {
                Ok(ReviewRow {
                    row,
                    decision: r[ROW_COLS].opt_string()?,
                    reviewer: r[ROW_COLS + 1].opt_string()?,
                    latency_ms: r[ROW_COLS + 2].opt_int()?,
                    proposed_event_id: r[ROW_COLS + 3].opt_string()?,
                })
            },
            ", e.review_decision, e.reviewer_id, e.review_latency_ms, e.proposed_event_id",
        )
    }

    /// The decisions a model (version) made in a range, counts by version, and their effects.
    pub fn model_attribution(
        &self,
        q: &ModelQuery,
        req: &PageReq,
    ) -> Result<ModelAttribution, IndexError> {
        // Only model.decision rows have a model_name: no event_type test (it would read rows).
        let mut w = Where::default();
        w.push("e.model_name = ?", Where::text(&q.name));
        if let Some(v) = &q.version {
            w.push("e.model_version = ?", Where::text(v));
        }
        q.range.push("e", &mut w);
        let counts_sql = format!(
            "SELECT e.model_version, count(*) FROM events e{} WHERE {}
             GROUP BY e.model_version
             ORDER BY e.model_version",
            // Counting a time range walks (name, occurred_ns, version) entries only.
            if q.range.field == TimeField::Occurred
                && (q.range.from.is_some() || q.range.to.is_some())
            {
                self.db.dialect().indexed_by("events_model_time")
            } else {
                self.db.dialect().indexed_by("events_model")
            },
            w.sql()
        );
        let counts = self
            .read(OP, |db| db.query(&counts_sql, &w.params).map_err(sql_err))?
            .iter()
            .map(|r| {
                Ok(VersionCount {
                    version: r[0].opt_string()?,
                    count: u64::try_from(r[1].int()?).unwrap_or(0),
                })
            })
            .collect::<Result<_, DbError>>()
            .map_err(sql_err)?;
        // The model index holds (name, version, seq, occurred_ns): ranges are checked in the
        // index, without reading the (large) rows of other models' events.
        let page = page_of(
            self,
            &format!("events e{}", self.db.dialect().indexed_by("events_model")),
            w,
            req,
            |_, row| Ok(row),
            "",
        )?;
        // Everything the page's decisions caused, transitively, in one recursive query.
        let mut caused = Vec::new();
        if !page.items.is_empty() {
            let seqs: Vec<String> = page.items.iter().map(|e| e.seq.to_string()).collect();
            let q = format!(
                "WITH RECURSIVE reach(seq, event_id, depth) AS (
                   SELECT seq, event_id, 0 FROM events WHERE seq IN ({})
                   UNION
                   SELECT ch.seq, ch.event_id, r.depth + 1 FROM reach r
                     JOIN causes c ON c.parent_event_id = r.event_id
                     JOIN events ch ON ch.seq = c.child_seq
                   WHERE r.depth < 10)
                 SELECT {ROW} FROM events e
                 WHERE e.seq IN (SELECT seq FROM reach WHERE depth > 0)
                   AND e.seq NOT IN ({})
                 ORDER BY e.seq",
                seqs.join(","),
                seqs.join(",")
            );
            caused = rows_of(self.read(OP, |db| db.query(&q, &[]).map_err(sql_err))?)?;
        }
        Ok(ModelAttribution {
            counts_by_version: counts,
            decisions: page.items,
            caused,
            next_cursor: page.next_cursor,
        })
    }

    /// Events matching every given filter, by seq.
    pub fn events(&self, f: &EventFilter, req: &PageReq) -> Result<Page<EventRow>, IndexError> {
        let mut w = Where::default();
        let eq = |w: &mut Where, col: &str, v: &Option<String>| {
            if let Some(v) = v {
                w.push(&format!("e.{col} = ?"), Where::text(v));
            }
        };
        eq(&mut w, "event_type", &f.event_type);
        eq(&mut w, "session_id", &f.session_id);
        eq(&mut w, "agent_id", &f.agent_id);
        eq(&mut w, "actor_id", &f.actor_id);
        eq(&mut w, "tool_name", &f.tool_name);
        eq(&mut w, "outcome", &f.outcome);
        eq(&mut w, "classification", &f.classification);
        eq(&mut w, "model_name", &f.model_name);
        eq(&mut w, "review_decision", &f.review_decision);
        f.range.push("e", &mut w);
        for (k, v) in &f.attributes {
            w.clauses.push(
                "EXISTS (SELECT 1 FROM attrs a WHERE a.key = ? AND a.value = ? AND a.seq = e.seq)"
                    .into(),
            );
            w.params.push(Where::text(k));
            w.params.push(Where::text(v));
        }
        if let Some(t) = &f.token {
            w.push(
                "e.seq IN (SELECT seq FROM tokens WHERE token = ?)",
                Where::text(t),
            );
        }
        page_of(self, "events e", w, req, |_, row| Ok(row), "")
    }
}

// ---- anomalies --------------------------------------------------------------------------------

/// A named anomaly and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum AnomalyKind {
    /// Approvals decided less than `max_latency_ms` after they were presented.
    FastApproval { max_latency_ms: i64 },
    /// Tool invocations caused by a decision whose proposed action a human rejected.
    ExecutedAfterRejection,
    /// Events whose `caused_by` names an event the ledger does not hold.
    DanglingCause,
    /// Events whose `occurred_at` and `received_at` differ by more than `bound_ms`.
    ClockSkew { bound_ms: i64 },
    /// A tool whose error rate within a window of `window_ms` (on occurred_at) is at least
    /// `min_error_rate` over at least `min_calls` calls.
    ToolErrorBurst {
        window_ms: i64,
        min_error_rate: f64,
        min_calls: u64,
    },
}

impl AnomalyKind {
    pub fn name(&self) -> &'static str {
        match self {
            AnomalyKind::FastApproval { .. } => "fast_approval",
            AnomalyKind::ExecutedAfterRejection => "executed_after_rejection",
            AnomalyKind::DanglingCause => "dangling_cause",
            AnomalyKind::ClockSkew { .. } => "clock_skew",
            AnomalyKind::ToolErrorBurst { .. } => "tool_error_burst",
        }
    }
}

/// One finding: the event it is about (for bursts, the first call of the window) and details.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    pub kind: &'static str,
    pub seq: u64,
    pub hash: String,
    pub event_id: String,
    pub detail: Value,
}

impl TenantIndex {
    /// Findings of one anomaly kind, by seq (bursts: by the seq of their first call).
    pub fn anomalies(
        &self,
        kind: &AnomalyKind,
        range: &TimeRange,
        req: &PageReq,
    ) -> Result<Page<Anomaly>, IndexError> {
        let name = kind.name();
        let mut w = Where::default();
        range.push("e", &mut w);
        let anomaly = |row: EventRow, detail: Value| Anomaly {
            kind: name,
            seq: row.seq,
            hash: row.hash,
            event_id: row.event_id,
            detail,
        };
        match kind {
            AnomalyKind::FastApproval { max_latency_ms } => {
                // Only human.review rows have a review_decision: no event_type test (a planner
                // taking the two as independent misjudges how many rows match).
                w.push("e.review_decision = ?", Where::text("approve"));
                w.push("e.review_latency_ms < ?", Val::Int(*max_latency_ms));
                page_of(
                    self,
                    "events e",
                    w,
                    req,
                    |r, row| {
                        let latency = r[ROW_COLS].opt_int()?;
                        let reviewer = r[ROW_COLS + 1].opt_string()?;
                        let proposed = r[ROW_COLS + 2].opt_string()?;
                        Ok(anomaly(
                            row,
                            json!({"latency_ms": latency, "reviewer": reviewer,
                                   "proposed_event_id": proposed}),
                        ))
                    },
                    ", e.review_latency_ms, e.reviewer_id, e.proposed_event_id",
                )
            }
            AnomalyKind::ExecutedAfterRejection => page_of(
                self,
                "rejected_executions x JOIN events e ON e.seq = x.seq",
                // Kept at apply time: one row per tool call (its first rejected cause).
                w,
                req,
                |r, row| {
                    let decision = r[ROW_COLS].string()?;
                    let review = r[ROW_COLS + 1].string()?;
                    Ok(anomaly(
                        row,
                        json!({"decision_event_id": decision, "review_event_id": review}),
                    ))
                },
                ", x.decision_event_id, x.review_event_id",
            ),
            AnomalyKind::DanglingCause => {
                if range.from.is_none() && range.to.is_none() {
                    // Only the next page's worth of children is taken from the dangling table.
                    let limit = req.limit() + 1;
                    w.clauses.push(format!(
                        "e.seq IN (SELECT DISTINCT child_seq FROM dangling WHERE child_seq > ?
                         ORDER BY child_seq LIMIT {limit})"
                    ));
                    w.params.push(Val::Int(req.after()?));
                } else {
                    // With a time range, some children fall outside it: take them all.
                    w.clauses
                        .push("e.seq IN (SELECT child_seq FROM dangling)".into());
                }
                page_of(
                    self,
                    "events e",
                    w,
                    req,
                    |r, row| {
                        let missing = r[ROW_COLS].string()?;
                        let missing: Vec<&str> = missing.split(' ').collect();
                        Ok(anomaly(row, json!({"missing_causes": missing})))
                    },
                    ", (SELECT string_agg(d.parent_event_id, ' ' ORDER BY d.parent_event_id)
                        FROM dangling d WHERE d.child_seq = e.seq)",
                )
            }
            AnomalyKind::ClockSkew { bound_ms } => {
                w.clauses.push(
                    "e.occurred_ns IS NOT NULL AND abs(e.received_ns - e.occurred_ns) > ?".into(),
                );
                w.params.push(Val::Int(bound_ms.saturating_mul(1_000_000)));
                page_of(
                    self,
                    "events e",
                    w,
                    req,
                    |r, row| {
                        let skew_ns = r[ROW_COLS].int()?;
                        Ok(anomaly(
                            row,
                            json!({"skew_ms": skew_ns.div_euclid(1_000_000)}),
                        ))
                    },
                    ", e.received_ns - e.occurred_ns",
                )
            }
            AnomalyKind::ToolErrorBurst {
                window_ms,
                min_error_rate,
                min_calls,
            } => self.bursts(*window_ms, *min_error_rate, *min_calls, range, req),
        }
    }

    /// Error bursts from the per-minute counters, window by window in time order (then by tool),
    /// stopping as soon as the page is full. Cursor: `<window index>:<tool>`.
    fn bursts(
        &self,
        window_ms: i64,
        min_error_rate: f64,
        min_calls: u64,
        range: &TimeRange,
        req: &PageReq,
    ) -> Result<Page<Anomaly>, IndexError> {
        if window_ms <= 0 || window_ms % 60_000 != 0 {
            return Err(IndexError::BadQuery(
                "window_ms must be a positive whole number of minutes".into(),
            ));
        }
        if range.field != TimeField::Occurred && (range.from.is_some() || range.to.is_some()) {
            return Err(IndexError::BadQuery(
                "tool_error_burst windows are on occurred_at".into(),
            ));
        }
        let per = window_ms / 60_000;
        let (after_win, after_tool) = match &req.cursor {
            None => (i64::MIN, String::new()),
            Some(c) => {
                let (w, t) = c.split_once(':').ok_or_else(|| {
                    IndexError::BadQuery(format!("cursor {c:?} is not one of ours"))
                })?;
                let w: i64 = w.parse().map_err(|_| {
                    IndexError::BadQuery(format!("cursor {c:?} is not one of ours"))
                })?;
                (w, t.to_owned())
            }
        };
        let minute = |t: Option<jiff::Timestamp>, default: i64| {
            t.map_or(default, |t| {
                i64::try_from(t.as_nanosecond().div_euclid(60_000_000_000)).unwrap_or(default)
            })
        };
        let lo = minute(range.from, i64::MIN).max(after_win.saturating_mul(per));
        let hi = minute(range.to, i64::MAX);
        let limit = req.limit();
        let mut found: Vec<(i64, String, i64, i64, i64)> = Vec::new();
        let mut current: Option<i64> = None;
        let mut acc: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
        let flush = |win: i64,
                     acc: &mut BTreeMap<String, (i64, i64, i64)>,
                     found: &mut Vec<(i64, String, i64, i64, i64)>| {
            for (tool, (calls, errors, first)) in std::mem::take(acc) {
                if (win, tool.as_str()) <= (after_win, after_tool.as_str()) {
                    continue;
                }
                if calls >= i64::try_from(min_calls).unwrap_or(i64::MAX)
                    && errors as f64 / calls as f64 >= min_error_rate
                {
                    found.push((win, tool, calls, errors, first));
                }
            }
        };
        // Whole minutes at a time, in one snapshot, stopping as soon as the page is full.
        const CHUNK: usize = 4096;
        // A window of one minute is one row: rows that cannot be a burst (too few calls, no
        // error when a rate above 0 is asked) are left in the database.
        let (least_calls, least_errors) = if per == 1 {
            (
                i64::try_from(min_calls).unwrap_or(i64::MAX),
                i64::from(min_error_rate > 0.0),
            )
        } else {
            (0, 0)
        };
        let minutes = "SELECT tool, minute, calls, errors, first_seq FROM tool_minutes
                       WHERE minute >= ?1 AND minute < ?2 AND calls >= ?4 AND errors >= ?5
                       ORDER BY minute, tool LIMIT ?3";
        self.read(OP, |db| {
            let mut from = lo;
            let mut more = true;
            while more && from < hi {
                let chunk = |from: i64, to: i64, n: usize| {
                    db.query(
                        minutes,
                        &[
                            Val::Int(from),
                            Val::Int(to),
                            Val::Int(n as i64),
                            Val::Int(least_calls),
                            Val::Int(least_errors),
                        ],
                    )
                    .map_err(sql_err)
                };
                let mut rows = chunk(from, hi, CHUNK)?;
                let minute_of = |r: &Vec<Val>| r[1].int().map_err(sql_err);
                if rows.len() < CHUNK {
                    more = false;
                } else if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
                    let (first, last) = (minute_of(first)?, minute_of(last)?);
                    if first == last {
                        // One minute with more tools than a chunk: all of it.
                        rows = chunk(last, last.saturating_add(1), usize::MAX >> 1)?;
                        from = last.saturating_add(1);
                    } else {
                        // The last minute may go on in the next chunk: read it there whole.
                        let mut kept = Vec::with_capacity(rows.len());
                        for r in rows {
                            if minute_of(&r)? < last {
                                kept.push(r);
                            }
                        }
                        rows = kept;
                        from = last;
                    }
                }
                for r in &rows {
                    let (tool, m, calls, errors, first): (String, i64, i64, i64, i64) = (
                        r[0].string().map_err(sql_err)?,
                        r[1].int().map_err(sql_err)?,
                        r[2].int().map_err(sql_err)?,
                        r[3].int().map_err(sql_err)?,
                        r[4].int().map_err(sql_err)?,
                    );
                    let win = m.div_euclid(per);
                    if current.is_some_and(|c| c != win) {
                        flush(current.unwrap_or(win), &mut acc, &mut found);
                        if found.len() > limit {
                            return Ok(());
                        }
                    }
                    current = Some(win);
                    let e = acc.entry(tool).or_insert((0, 0, i64::MAX));
                    e.0 += calls;
                    e.1 += errors;
                    e.2 = e.2.min(first);
                }
            }
            Ok(())
        })?;
        if found.len() <= limit
            && let Some(c) = current
        {
            flush(c, &mut acc, &mut found);
        }
        let next_cursor = if found.len() > limit {
            found.truncate(limit);
            found.last().map(|(w, t, ..)| format!("{w}:{t}"))
        } else {
            None
        };
        // The first call of every window found, in one query.
        let firsts: Vec<u64> = found.iter().map(|f| f.4 as u64).collect();
        let rows = self.events_at(&firsts)?;
        let mut items = Vec::with_capacity(found.len());
        for (win, tool, calls, errors, first) in found {
            let row = rows
                .get(&(first as u64))
                .cloned()
                .ok_or_else(|| IndexError::NotFound(format!("at seq {first}")))?;
            let start = jiff::Timestamp::from_nanosecond(
                i128::from(win) * i128::from(window_ms) * 1_000_000,
            )
            .map(|t| t.to_string())
            .unwrap_or_default();
            items.push(Anomaly {
                kind: "tool_error_burst",
                seq: row.seq,
                hash: row.hash,
                event_id: row.event_id,
                detail: json!({"tool": tool, "window_start": start, "window_ms": window_ms,
                               "calls": calls, "errors": errors,
                               "error_rate": errors as f64 / calls as f64}),
            });
        }
        Ok(Page { items, next_cursor })
    }

    /// The events at these seqs (those the index holds), in one read.
    fn events_at(&self, seqs: &[u64]) -> Result<BTreeMap<u64, EventRow>, IndexError> {
        let mut out = BTreeMap::new();
        if seqs.is_empty() {
            return Ok(out);
        }
        let list: Vec<String> = seqs.iter().map(u64::to_string).collect();
        let q = format!(
            "SELECT {ROW} FROM events e WHERE e.seq IN ({})",
            list.join(",")
        );
        for row in rows_of(self.read(OP, |db| db.query(&q, &[]).map_err(sql_err))?)? {
            out.insert(row.seq, row);
        }
        Ok(out)
    }

    /// The event at a seq.
    pub fn event_at(&self, seq: u64) -> Result<EventRow, IndexError> {
        let rows = self.read(OP, |db| {
            db.query(
                &format!("SELECT {ROW} FROM events e WHERE e.seq = ?1"),
                &[Val::Int(seq as i64)],
            )
            .map_err(sql_err)
        })?;
        rows_of(rows)?
            .into_iter()
            .next()
            .ok_or_else(|| IndexError::NotFound(format!("at seq {seq}")))
    }
}

/// Review latency of a stored human.review, as the index derives it.
pub fn review_latency_ms(event: &Value) -> Option<i64> {
    let p = event.get("payload")?;
    let a = ts_ns(p.get("presented_at")?.as_str()?)?;
    let b = ts_ns(p.get("decided_at")?.as_str()?)?;
    Some((b - a).div_euclid(1_000_000))
}
