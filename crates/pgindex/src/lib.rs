//! The query store in PostgreSQL: one set of tables for every tenant, `tenant_id` in every key,
//! row-level security enforced by the database (see [`schema`]). It answers exactly like the
//! embedded SQLite index because it is the same store: [`agentrail_index::TenantIndex`] runs its
//! statements through [`PgDb`] instead of a SQLite file. Several agentrail nodes can read one
//! database; one writes each tenant.
//!
//! ```no_run
//! use agentrail_index::Store;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = agentrail_pgindex::PgStore::connect("postgres://agentrail@localhost/agentrail")?;
//! let index = store.open(&agentrail_event::TenantId::parse("acme")?)?;
//! println!("{} events indexed", index.applied());
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod schema;

use agentrail_event::TenantId;
use agentrail_index::db::{Db, DbError, Dialect, FailureKind, Rows, Val};
use agentrail_index::{IndexError, Store, TenantIndex};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Statement};

/// Connections kept by a store.
pub const POOL_SIZE: u32 = 8;
/// Statements kept prepared per connection.
const MAX_PREPARED: usize = 256;
/// Statements pipelined before their answers are awaited.
const MAX_PENDING: usize = 2048;

/// The store's own runtime: the client's connections live on it, and every call is a task
/// the calling thread waits for, so the store works from any thread (a runtime's too).
#[derive(Debug, Clone)]
struct Runtime(Arc<OwnRuntime>);

/// Shut down without waiting when the last store goes: it may be dropped on a thread of
/// another runtime, where blocking is not allowed.
#[derive(Debug)]
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Runtime {
    fn new() -> Result<Runtime, DbError> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("agentrail-pg")
            .enable_all()
            .build()
            .map(|rt| Runtime(Arc::new(OwnRuntime(Some(rt)))))
            .map_err(|e| DbError::other(format!("cannot start the PostgreSQL client: {e}")))
    }

    fn handle(&self) -> Result<&tokio::runtime::Runtime, DbError> {
        self.0
            .0
            .as_ref()
            .ok_or_else(|| DbError::new(FailureKind::Unavailable, "the PostgreSQL client stopped"))
    }

    /// Runs `fut` on the runtime and waits for it.
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, DbError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle()?.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| {
            DbError::new(
                FailureKind::Unavailable,
                "the PostgreSQL client's runtime stopped",
            )
        })
    }
}

/// One connection of the pool, with the statements prepared on it.
struct Conn {
    client: Arc<Client>,
    prepared: HashMap<String, Statement>,
}

/// Opens pool connections: the schema on the search path, the query store's settings.
#[derive(Debug)]
struct Manager {
    config: tokio_postgres::Config,
    rt: Runtime,
}

/// A connection failure as the pool reports it.
#[derive(Debug)]
struct ConnectError(DbError);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ConnectError {}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = ConnectError;

    fn connect(&self) -> Result<Conn, ConnectError> {
        let config = self.config.clone();
        let rt = self.rt.clone();
        let client = self
            .rt
            .run(async move {
                let (client, connection) = config.connect(NoTls).await?;
                if let Ok(rt) = rt.handle() {
                    rt.spawn(async move {
                        // Ends with the connection; its failure is what the next call reports.
                        let _ = connection.await;
                    });
                }
                // The index is rebuildable from the ledger: its commits need not wait for the
                // disk.
                client
                    .batch_execute(&format!(
                        "SET search_path = {}; SET synchronous_commit = off;
                         SET standard_conforming_strings = on",
                        schema::SCHEMA
                    ))
                    .await?;
                Ok::<_, tokio_postgres::Error>(client)
            })
            .map_err(ConnectError)?
            .map_err(|e| ConnectError(pg_error(&e)))?;
        Ok(Conn {
            client: Arc::new(client),
            prepared: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), ConnectError> {
        let client = conn.client.clone();
        self.rt
            .run(async move { client.simple_query("").await.map(|_| ()) })
            .map_err(ConnectError)?
            .map_err(|e| ConnectError(pg_error(&e)))
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.client.is_closed()
    }
}

type Pool = r2d2::Pool<Manager>;

/// The query store of every tenant in one PostgreSQL database.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    rt: Runtime,
    /// The URL without its password, for messages.
    shown: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgStore({})", self.shown)
    }
}

/// A `postgres://` URL with the password left out.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}{user}{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn pg_error(e: &tokio_postgres::Error) -> DbError {
    let kind = match e.as_db_error() {
        Some(db) => match db.code().code() {
            // disk_full, io_error, out_of_memory, insufficient_resources
            "53100" | "58030" | "53200" | "53000" => FailureKind::Storage,
            // data_corrupted, index_corrupted
            "XX001" | "XX002" => FailureKind::Damage,
            // admin_shutdown, crash_shutdown, cannot_connect_now
            "57P01" | "57P02" | "57P03" => FailureKind::Unavailable,
            _ => FailureKind::Other,
        },
        // No answer from the server: a lost connection, a server restarting.
        None => FailureKind::Unavailable,
    };
    let message = match e.as_db_error() {
        Some(db) => {
            let mut m = format!("PostgreSQL: {} ({})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                m.push_str(&format!("; {d}"));
            }
            m
        }
        None => format!("PostgreSQL: {e}"),
    };
    DbError::new(kind, message)
}

fn index_error(op: &'static str, e: DbError) -> IndexError {
    IndexError::Sql { op, source: e }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user[:password]@host[:port]/db`, or
    /// key=value pairs) and applies the migrations this binary has that it lacks.
    pub fn connect(url: &str) -> Result<PgStore, IndexError> {
        PgStore::connect_with(url, POOL_SIZE, Duration::from_secs(10))
    }

    /// [`PgStore::connect`] with a pool of `size` connections, waiting at most `timeout` for
    /// one (then the operation fails as unavailable and is retried).
    pub fn connect_with(url: &str, size: u32, timeout: Duration) -> Result<PgStore, IndexError> {
        let shown = without_password(url);
        let config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
            index_error(
                "connect to the query store",
                DbError::other(format!(
                    "{shown} is not a PostgreSQL connection string: {e}"
                )),
            )
        })?;
        let rt = Runtime::new().map_err(|e| index_error("connect to the query store", e))?;
        let pool = r2d2::Pool::builder()
            .max_size(size.max(1))
            .min_idle(Some(0))
            .connection_timeout(timeout)
            .test_on_check_out(false)
            .build_unchecked(Manager {
                config,
                rt: rt.clone(),
            });
        let store = PgStore { pool, rt, shown };
        store.migrate()?;
        Ok(store)
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<Manager>, DbError> {
        self.pool.get().map_err(|e| {
            DbError::new(
                FailureKind::Unavailable,
                format!("PostgreSQL at {} cannot be reached: {e}", self.shown),
            )
        })
    }

    /// Applies the migrations the database lacks, in one transaction, one node at a time.
    fn migrate(&self) -> Result<(), IndexError> {
        let op = "migrate the query store";
        let conn = self.conn().map_err(|e| index_error(op, e))?;
        let client = conn.client.clone();
        let shown = self.shown.clone();
        let s = schema::SCHEMA;
        self.rt
            .run(async move {
                let err = |e: tokio_postgres::Error| pg_error(&e);
                client.batch_execute("BEGIN").await.map_err(err)?;
                // Nodes starting together: one applies, the others wait and find it done.
                client
                    .batch_execute(&format!(
                        "SELECT pg_advisory_xact_lock(7226510388);
                         CREATE SCHEMA IF NOT EXISTS {s};
                         CREATE TABLE IF NOT EXISTS {s}.migrations (
                           version INTEGER PRIMARY KEY, description TEXT NOT NULL,
                           applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                    ))
                    .await
                    .map_err(err)?;
                let have: i32 = client
                    .query_one(
                        &format!("SELECT coalesce(max(version), 0) FROM {s}.migrations"),
                        &[],
                    )
                    .await
                    .map_err(err)?
                    .get(0);
                let all = schema::migrations();
                let known = all.last().map_or(0, |m| m.0);
                if have > known {
                    let _ = client.batch_execute("ROLLBACK").await;
                    return Err(DbError::other(format!(
                        "the query store at {shown} has schema version {have}, newer than this agentrail knows ({known}): upgrade agentrail"
                    )));
                }
                for (version, description, sql) in all.into_iter().filter(|m| m.0 > have) {
                    if let Err(e) = client.batch_execute(&sql).await {
                        let _ = client.batch_execute("ROLLBACK").await;
                        return Err(DbError::other(format!(
                            "migration {version} ({description}): {}",
                            pg_error(&e).message
                        )));
                    }
                    client
                        .execute(
                            &format!(
                                "INSERT INTO {s}.migrations (version, description) VALUES ($1, $2)"
                            ),
                            &[&version, &description],
                        )
                        .await
                        .map_err(err)?;
                }
                client.batch_execute("COMMIT").await.map_err(err)
            })
            .and_then(|r| r)
            .map_err(|e| index_error(op, e))
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i32, IndexError> {
        let op = "read the query store's version";
        let conn = self.conn().map_err(|e| index_error(op, e))?;
        let client = conn.client.clone();
        self.rt
            .run(async move {
                let row = client
                    .query_one(
                        &format!("SELECT max(version) FROM {}.migrations", schema::SCHEMA),
                        &[],
                    )
                    .await
                    .map_err(|e| pg_error(&e))?;
                Ok(row.get::<_, Option<i32>>(0).unwrap_or(0))
            })
            .and_then(|r| r)
            .map_err(|e| index_error(op, e))
    }
}

impl Store for PgStore {
    fn open(&self, tenant: &TenantId) -> Result<TenantIndex, IndexError> {
        TenantIndex::with_db(
            Box::new(PgDb {
                store: self.clone(),
                tenant: tenant.clone(),
                held: Mutex::new(None),
            }),
            tenant,
        )
    }

    /// Deletes the tenant's rows, as the apply role under the tenant's policy (PostgreSQL has
    /// no file to keep aside; the ledger is what they are rebuilt from).
    fn discard(&self, tenant: &TenantId, _keep: bool) -> Result<Option<String>, IndexError> {
        let db = PgDb {
            store: self.clone(),
            tenant: tenant.clone(),
            held: Mutex::new(None),
        };
        let op = "discard the tenant's index";
        db.begin(true).map_err(|e| index_error(op, e))?;
        for table in agentrail_index::TABLES {
            if let Err(e) = db.execute(&format!("DELETE FROM {table}"), &[]) {
                db.rollback();
                return Err(index_error(op, e));
            }
        }
        db.commit().map_err(|e| index_error(op, e))?;
        let _ = db.scrub(agentrail_index::TABLES, 1);
        Ok(None)
    }

    fn describe(&self) -> String {
        format!("PostgreSQL at {}", self.shown)
    }
}

/// A parameter bound to whatever type PostgreSQL inferred for its place.
#[derive(Debug)]
struct Param<'a>(&'a Val);

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                _ => Err(format!("an integer cannot be bound where {ty} is expected").into()),
            },
            Val::Real(r) => r.to_sql(ty, out),
            Val::Text(s) => s.as_str().to_sql(ty, out),
            Val::Blob(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// `?N` (and bare `?`, numbered left to right as SQLite does) → `$N`, outside string literals.
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let (mut in_string, mut max) = (false, 0u32);
    while let Some(c) = chars.next() {
        if c == '\'' {
            in_string = !in_string;
            out.push(c);
        } else if c == '?' && !in_string {
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            let n = match digits.parse::<u32>() {
                Ok(n) => n,
                Err(_) => max + 1,
            };
            max = max.max(n);
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

fn value_of(row: &tokio_postgres::Row, i: usize) -> Result<Val, DbError> {
    let col = &row.columns()[i];
    let get_err = |e: tokio_postgres::Error| DbError::other(format!("column {}: {e}", col.name()));
    Ok(match *col.type_() {
        Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(get_err)?.into(),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)
            .map_err(get_err)?
            .map(i64::from)
            .into(),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)
            .map_err(get_err)?
            .map(i64::from)
            .into(),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)
            .map_err(get_err)?
            .map(i64::from)
            .into(),
        Type::FLOAT8 => row
            .try_get::<_, Option<f64>>(i)
            .map_err(get_err)?
            .map_or(Val::Null, Val::Real),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
            row.try_get::<_, Option<String>>(i).map_err(get_err)?.into()
        }
        Type::BYTEA => row
            .try_get::<_, Option<Vec<u8>>>(i)
            .map_err(get_err)?
            .map_or(Val::Null, Val::Blob),
        ref other => {
            return Err(DbError::other(format!(
                "column {} has type {other}, which the query store does not read",
                col.name()
            )));
        }
    })
}

/// One tenant's view of the database: every transaction takes a pooled connection, switches
/// to the query or apply role and sets the tenant (`SET LOCAL`), so the policies filter every
/// statement of it.
pub struct PgDb {
    store: PgStore,
    tenant: TenantId,
    /// The open transaction.
    held: Mutex<Option<Held>>,
}

impl std::fmt::Debug for PgDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgDb({} for {})", self.store.shown, self.tenant)
    }
}

/// A transaction's connection and the statements sent to it whose answers are not awaited yet.
struct Held {
    conn: r2d2::PooledConnection<Manager>,
    pending: Vec<(Statement, Vec<Val>)>,
}

/// Binds owned values as the parameters of one statement.
fn params_of(vals: &[Val]) -> Vec<Param<'_>> {
    vals.iter().map(Param).collect()
}

fn refs<'a>(p: &'a [Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    p.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl PgDb {
    fn with_held<T>(&self, f: impl FnOnce(&mut Held) -> Result<T, DbError>) -> Result<T, DbError> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        match held.as_mut() {
            Some(h) => f(h),
            None => Err(DbError::other(
                "a statement outside a transaction (the tenant would not be set)",
            )),
        }
    }

    fn statement(&self, h: &mut Held, sql: &str) -> Result<Statement, DbError> {
        if let Some(s) = h.conn.prepared.get(sql) {
            return Ok(s.clone());
        }
        let client = h.conn.client.clone();
        let text = placeholders(sql);
        let stmt = self
            .store
            .rt
            .run(async move { client.prepare(&text).await })?
            .map_err(|e| pg_error(&e))?;
        if h.conn.prepared.len() >= MAX_PREPARED {
            // Statements with literal lists (seqs of a page) differ call to call: start over
            // rather than grow (a dropped statement is closed on the server).
            h.conn.prepared.clear();
        }
        h.conn.prepared.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    /// Sends the pending statements, in order, in one pipeline, and waits for their answers.
    fn flush(&self, h: &mut Held) -> Result<(), DbError> {
        if h.pending.is_empty() {
            return Ok(());
        }
        let client = h.conn.client.clone();
        let pending = std::mem::take(&mut h.pending);
        self.store
            .rt
            .run(async move {
                // Each is sent when first polled; try_join_all polls them in order.
                let calls = pending.iter().map(|(stmt, vals)| {
                    let client = &client;
                    async move {
                        let p = params_of(vals);
                        client.execute(stmt, &refs(&p)).await
                    }
                });
                futures_util::future::try_join_all(calls).await.map(|_| ())
            })?
            .map_err(|e| pg_error(&e))
    }
}

impl Db for PgDb {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn begin(&self, write: bool) -> Result<(), DbError> {
        // Tenant ids are lowercase letters, digits and dashes: safe as a literal.
        let tenant = self.tenant.as_str().replace('\'', "''");
        let sql = if write {
            format!(
                "BEGIN; SET LOCAL ROLE {}; SELECT set_config('agentrail.tenant', '{tenant}', true)",
                schema::APPLY_ROLE
            )
        } else {
            format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL ROLE {};
                 SELECT set_config('agentrail.tenant', '{tenant}', true)",
                schema::QUERY_ROLE
            )
        };
        // Idle connections a restarted server dropped are found here, before anything was
        // done: each goes (the pool discards closed ones) and the next is tried.
        let mut attempts = self.store.pool.max_size() + 1;
        loop {
            let conn = self.store.conn()?;
            let client = conn.client.clone();
            let text = sql.clone();
            let began = self
                .store
                .rt
                .run(async move { client.batch_execute(&text).await })?;
            match began {
                Ok(()) => {
                    *self.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(Held {
                        conn,
                        pending: Vec::new(),
                    });
                    return Ok(());
                }
                Err(_) if conn.client.is_closed() && attempts > 1 => attempts -= 1,
                Err(e) => return Err(pg_error(&e)),
            }
        }
    }

    fn commit(&self) -> Result<(), DbError> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut h) = held else {
            return Err(DbError::other("commit without a transaction"));
        };
        let flushed = self.flush(&mut h);
        let client = h.conn.client.clone();
        let end = if flushed.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        let ended = self
            .store
            .rt
            .run(async move { client.batch_execute(end).await })?
            .map_err(|e| pg_error(&e));
        flushed.and(ended)
    }

    fn rollback(&self) {
        if let Some(h) = self.held.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let client = h.conn.client.clone();
            let _ = self
                .store
                .rt
                .run(async move { client.batch_execute("ROLLBACK").await });
        }
    }

    fn execute(&self, sql: &str, params: &[Val]) -> Result<u64, DbError> {
        self.with_held(|h| {
            self.flush(h)?;
            let stmt = self.statement(h, sql)?;
            let client = h.conn.client.clone();
            let vals = params.to_vec();
            self.store
                .rt
                .run(async move {
                    let p = params_of(&vals);
                    client.execute(&stmt, &refs(&p)).await
                })?
                .map_err(|e| pg_error(&e))
        })
    }

    fn defer(&self, sql: &str, params: &[Val]) -> Result<(), DbError> {
        self.with_held(|h| {
            let stmt = self.statement(h, sql)?;
            h.pending.push((stmt, params.to_vec()));
            if h.pending.len() >= MAX_PENDING {
                self.flush(h)?;
            }
            Ok(())
        })
    }

    fn query(&self, sql: &str, params: &[Val]) -> Result<Rows, DbError> {
        self.with_held(|h| {
            self.flush(h)?;
            let stmt = self.statement(h, sql)?;
            let client = h.conn.client.clone();
            let vals = params.to_vec();
            let rows = self
                .store
                .rt
                .run(async move {
                    let p = params_of(&vals);
                    client.query(&stmt, &refs(&p)).await
                })?
                .map_err(|e| pg_error(&e))?;
            rows.iter()
                .map(|r| (0..r.len()).map(|i| value_of(r, i)).collect())
                .collect()
        })
    }

    /// `VACUUM` of the tables (as the connecting role, which owns them): the dead tuples of
    /// the deleted rows are removed, so no query, index scan or later reader of the table
    /// finds them (their space is reused; see the README for what stays in WAL and free space).
    fn scrub(&self, tables: &[&str], _attempts: u64) -> Result<bool, DbError> {
        let conn = self.store.conn()?;
        let client = conn.client.clone();
        let sql = format!("VACUUM {}", tables.join(", "));
        self.store
            .rt
            .run(async move { client.batch_execute(&sql).await })?
            .map_err(|e| pg_error(&e))?;
        Ok(true)
    }

    fn grew(&self, before: u64, after: u64) -> Result<(), DbError> {
        // At 1,024 events and every doubling after (a few times per tenant, ever).
        let doubling = |n: u64| if n < 1024 { 0 } else { 64 - n.leading_zeros() };
        if doubling(after) <= doubling(before) {
            return Ok(());
        }
        let conn = self.store.conn()?;
        let client = conn.client.clone();
        let sql = format!("ANALYZE {}", agentrail_index::TABLES.join(", "));
        self.store
            .rt
            .run(async move { client.batch_execute(&sql).await })?
            .map_err(|e| pg_error(&e))
    }

    fn size_on_disk(&self) -> Option<u64> {
        None
    }

    fn describe(&self) -> String {
        format!("{} (tenant {})", self.store.describe(), self.tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_like_sqlite_and_strings_are_left_alone() {
        assert_eq!(
            placeholders("a = ?1 AND b = ?2 OR c = ?1"),
            "a = $1 AND b = $2 OR c = $1"
        );
        assert_eq!(placeholders("a = ? AND b = ?"), "a = $1 AND b = $2");
        assert_eq!(
            placeholders("x = '?' AND y = ?3 AND z = ?"),
            "x = '?' AND y = $3 AND z = $4"
        );
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            without_password("postgres://agent:s3cret@db:5432/ar"),
            "postgres://agent@db:5432/ar"
        );
        assert_eq!(without_password("postgres://db/ar"), "postgres://db/ar");
    }
}
