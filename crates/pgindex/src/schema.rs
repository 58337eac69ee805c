//! The PostgreSQL schema, as versioned migrations applied at start (under an advisory lock, so
//! nodes starting together apply each once), and the roles it is read and written through.
//!
//! Every table has `tenant_id` first in its key and a row-level security policy comparing it
//! with the transaction's `agentrail.tenant` setting; `FORCE ROW LEVEL SECURITY` makes the
//! policies hold for the tables' owner too. Rows are written as `agentrail_apply` and read as
//! `agentrail_query`, two NOLOGIN roles without BYPASSRLS that the connecting role is granted and
//! switches to per transaction (`SET LOCAL ROLE`): even a query with no tenant filter, or a
//! connecting role that could bypass the policies, sees one tenant's rows, and none when no
//! tenant is set.

/// The schema (namespace) the tables live in.
pub const SCHEMA: &str = "agentrail";
/// The role every query runs as: SELECT only.
pub const QUERY_ROLE: &str = "agentrail_query";
/// The role applying the ledger, purging and erasing: SELECT, INSERT, UPDATE, DELETE.
pub const APPLY_ROLE: &str = "agentrail_apply";

/// The tables, each with its columns after `tenant_id` and its key (after `tenant_id`).
const TABLES: &[(&str, &str, &str)] = &[
    ("meta", "key TEXT NOT NULL, value BIGINT NOT NULL", "key"),
    (
        "events",
        "seq BIGINT NOT NULL, hash BYTEA NOT NULL, event_id TEXT NOT NULL,
         event_type TEXT NOT NULL, session_id TEXT, session_seq BIGINT, session_prev_hash BYTEA,
         agent_id TEXT, actor_id TEXT, actor_type TEXT, subject_id TEXT, occurred_ns BIGINT,
         received_ns BIGINT NOT NULL, tool_name TEXT, outcome TEXT, classification TEXT,
         model_provider TEXT, model_name TEXT, model_version TEXT, review_decision TEXT,
         reviewer_id TEXT, review_latency_ms BIGINT, proposed_event_id TEXT,
         clock_skew_ms BIGINT",
        "seq",
    ),
    (
        "causes",
        "child_seq BIGINT NOT NULL, parent_event_id TEXT NOT NULL, parent_hash BYTEA, via TEXT",
        "child_seq, parent_event_id",
    ),
    (
        "tool_calls",
        "scope TEXT NOT NULL, call_id TEXT NOT NULL, role BIGINT NOT NULL, seq BIGINT NOT NULL",
        "scope, call_id, role, seq",
    ),
    (
        "dangling",
        "child_seq BIGINT NOT NULL, parent_event_id TEXT NOT NULL",
        "child_seq, parent_event_id",
    ),
    (
        "rejected_executions",
        "seq BIGINT NOT NULL, decision_event_id TEXT NOT NULL, review_event_id TEXT NOT NULL",
        "seq",
    ),
    (
        "tool_minutes",
        "tool TEXT NOT NULL, minute BIGINT NOT NULL, calls BIGINT NOT NULL,
         errors BIGINT NOT NULL, first_seq BIGINT NOT NULL",
        "minute, tool",
    ),
    (
        "attrs",
        "key TEXT NOT NULL, value TEXT NOT NULL, seq BIGINT NOT NULL",
        "key, value, seq",
    ),
    (
        "content",
        "seq BIGINT NOT NULL, subject_id TEXT, received_ns BIGINT NOT NULL, fields TEXT NOT NULL",
        "seq",
    ),
    (
        "tokens",
        "token TEXT NOT NULL, seq BIGINT NOT NULL",
        "token, seq",
    ),
];

/// The secondary indexes: the embedded index's, each led by `tenant_id`, but for SQLite's
/// `events_model_time` (SQLite is told to count a model's time range on it; PostgreSQL's
/// planner, given it, chose it for the model's page too and sorted a whole day of decisions by
/// seq: 254 ms where `events_model` answers in 0.6 ms).
const INDEXES: &[(&str, &str, &str)] = &[
    ("events_event_id", "events", "UNIQUE (tenant_id, event_id)"),
    (
        "events_session",
        "events",
        "(tenant_id, session_id, session_seq) WHERE session_id IS NOT NULL",
    ),
    ("events_type", "events", "(tenant_id, event_type, seq)"),
    ("events_occurred", "events", "(tenant_id, occurred_ns)"),
    ("events_received", "events", "(tenant_id, received_ns)"),
    (
        "events_model",
        "events",
        "(tenant_id, model_name, model_version, seq, occurred_ns) WHERE model_name IS NOT NULL",
    ),
    (
        "events_tool",
        "events",
        "(tenant_id, tool_name, seq) WHERE tool_name IS NOT NULL",
    ),
    (
        "events_tool_outcome",
        "events",
        "(tenant_id, tool_name, outcome, seq) WHERE tool_name IS NOT NULL",
    ),
    (
        "events_reviewer",
        "events",
        "(tenant_id, reviewer_id, seq) WHERE reviewer_id IS NOT NULL",
    ),
    (
        "events_review",
        "events",
        "(tenant_id, review_decision, seq) WHERE review_decision IS NOT NULL",
    ),
    (
        "events_proposed",
        "events",
        "(tenant_id, proposed_event_id) WHERE proposed_event_id IS NOT NULL",
    ),
    (
        "events_agent",
        "events",
        "(tenant_id, agent_id, seq) WHERE agent_id IS NOT NULL",
    ),
    (
        "events_actor",
        "events",
        "(tenant_id, actor_id, seq) WHERE actor_id IS NOT NULL",
    ),
    ("causes_parent", "causes", "(tenant_id, parent_event_id)"),
    ("tool_calls_seq", "tool_calls", "(tenant_id, seq)"),
    (
        "dangling_parent",
        "dangling",
        "(tenant_id, parent_event_id)",
    ),
    ("attrs_seq", "attrs", "(tenant_id, seq)"),
    (
        "content_subject",
        "content",
        "(tenant_id, subject_id) WHERE subject_id IS NOT NULL",
    ),
    ("content_received", "content", "(tenant_id, received_ns)"),
    ("tokens_seq", "tokens", "(tenant_id, seq)"),
];

/// Migration 1: roles, schema, tables, indexes, policies and grants.
fn v1() -> String {
    let mut sql = format!(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{QUERY_ROLE}') THEN
             CREATE ROLE {QUERY_ROLE} NOLOGIN NOBYPASSRLS;
           END IF;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
         END $$;
         DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APPLY_ROLE}') THEN
             CREATE ROLE {APPLY_ROLE} NOLOGIN NOBYPASSRLS;
           END IF;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
         END $$;
         GRANT {QUERY_ROLE}, {APPLY_ROLE} TO CURRENT_USER;
         CREATE SCHEMA IF NOT EXISTS {SCHEMA};
         GRANT USAGE ON SCHEMA {SCHEMA} TO {QUERY_ROLE}, {APPLY_ROLE};\n"
    );
    for (table, cols, key) in TABLES {
        sql.push_str(&format!(
            "CREATE TABLE {SCHEMA}.{table} (
               tenant_id TEXT NOT NULL DEFAULT current_setting('agentrail.tenant'),
               {cols},
               PRIMARY KEY (tenant_id, {key}));
             ALTER TABLE {SCHEMA}.{table} ENABLE ROW LEVEL SECURITY;
             ALTER TABLE {SCHEMA}.{table} FORCE ROW LEVEL SECURITY;
             CREATE POLICY tenant_rows ON {SCHEMA}.{table}
               USING (tenant_id = current_setting('agentrail.tenant', true))
               WITH CHECK (tenant_id = current_setting('agentrail.tenant', true));
             GRANT SELECT ON {SCHEMA}.{table} TO {QUERY_ROLE};
             GRANT SELECT, INSERT, UPDATE, DELETE ON {SCHEMA}.{table} TO {APPLY_ROLE};\n"
        ));
    }
    for (name, table, def) in INDEXES {
        let (unique, def) = match def.strip_prefix("UNIQUE ") {
            Some(d) => ("UNIQUE ", d),
            None => ("", *def),
        };
        sql.push_str(&format!(
            "CREATE {unique}INDEX {name} ON {SCHEMA}.{table} {def};\n"
        ));
    }
    sql
}

/// Every migration, in order: (version, what it does, its SQL). Applied ones are recorded in
/// `agentrail.migrations`; a database with a newer one than this binary knows is refused.
pub fn migrations() -> Vec<(i32, &'static str, String)> {
    vec![(
        1,
        "query store tables with row-level security, query and apply roles",
        v1(),
    )]
}
