//! The SQL engine under the query store. The store's logic — what `apply` writes, what each query
//! asks — is written once, in [`crate::TenantIndex`], against this small interface; the engines
//! differ only in how a statement reaches the database and in their schema: an embedded SQLite
//! file per tenant ([`SqliteDb`], here), or one PostgreSQL database shared by every tenant with
//! row-level security (`agentrail-pgindex`, which needs a runtime this crate must not pull in).
//! That is how both give identical answers: the same statements over the same rows.
//!
//! Statements use SQLite's numbered parameters (`?1`, or `?` numbered left to right) and the SQL
//! both engines speak; where they differ, [`Dialect`] spells it.

use std::fmt;

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Val {
    pub fn text(s: &str) -> Val {
        Val::Text(s.to_owned())
    }

    fn kind(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Int(_) => "an integer",
            Val::Real(_) => "a real",
            Val::Text(_) => "text",
            Val::Blob(_) => "a blob",
        }
    }

    fn unexpected(&self, want: &str) -> DbError {
        DbError::other(format!(
            "a column holds {} where {want} was expected",
            self.kind()
        ))
    }

    pub fn int(&self) -> Result<i64, DbError> {
        match self {
            Val::Int(i) => Ok(*i),
            v => Err(v.unexpected("an integer")),
        }
    }

    pub fn opt_int(&self) -> Result<Option<i64>, DbError> {
        match self {
            Val::Null => Ok(None),
            v => v.int().map(Some),
        }
    }

    pub fn string(&self) -> Result<String, DbError> {
        match self {
            Val::Text(s) => Ok(s.clone()),
            v => Err(v.unexpected("text")),
        }
    }

    pub fn opt_string(&self) -> Result<Option<String>, DbError> {
        match self {
            Val::Null => Ok(None),
            v => v.string().map(Some),
        }
    }

    pub fn blob(&self) -> Result<Vec<u8>, DbError> {
        match self {
            Val::Blob(b) => Ok(b.clone()),
            v => Err(v.unexpected("a blob")),
        }
    }

    pub fn opt_blob(&self) -> Result<Option<Vec<u8>>, DbError> {
        match self {
            Val::Null => Ok(None),
            v => v.blob().map(Some),
        }
    }
}

impl From<i64> for Val {
    fn from(i: i64) -> Val {
        Val::Int(i)
    }
}

impl From<&str> for Val {
    fn from(s: &str) -> Val {
        Val::text(s)
    }
}

impl From<String> for Val {
    fn from(s: String) -> Val {
        Val::Text(s)
    }
}

impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Val {
        v.map_or(Val::Null, Into::into)
    }
}

impl From<Vec<u8>> for Val {
    fn from(b: Vec<u8>) -> Val {
        Val::Blob(b)
    }
}

impl From<&[u8]> for Val {
    fn from(b: &[u8]) -> Val {
        Val::Blob(b.to_vec())
    }
}

/// Rows of a query, columns in select order.
pub type Rows = Vec<Vec<Val>>;

/// How a failure is classified by the layers above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The store itself is bad (not a database, damaged pages): rebuild it from the ledger.
    Damage,
    /// The storage under it failed (disk full, I/O): may work once the cause is gone.
    Storage,
    /// The database cannot be reached (a server restarting, a dropped connection): retry.
    Unavailable,
    Other,
}

/// A failure of the engine, with its own message.
#[derive(Debug, Clone)]
pub struct DbError {
    pub kind: FailureKind,
    pub message: String,
}

impl DbError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> DbError {
        DbError {
            kind,
            message: message.into(),
        }
    }

    pub fn other(message: impl Into<String>) -> DbError {
        DbError::new(FailureKind::Other, message)
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DbError {}

/// Where the engines' SQL differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// An `ON CONFLICT` target naming a table's key columns: PostgreSQL's keys start with
    /// `tenant_id` (row-level security), SQLite's per-tenant file has none.
    pub fn key(self, cols: &str) -> String {
        match self {
            Dialect::Sqlite => format!("({cols})"),
            Dialect::Postgres => format!("(tenant_id, {cols})"),
        }
    }

    /// The smaller of two values (`min(a, b)` in SQLite, `least` in PostgreSQL).
    pub fn least(self, a: &str, b: &str) -> String {
        match self {
            Dialect::Sqlite => format!("min({a}, {b})"),
            Dialect::Postgres => format!("least({a}, {b})"),
        }
    }

    /// `INDEXED BY <index>`: SQLite's planner is told which index answers a model query best;
    /// PostgreSQL's planner has statistics and is left to choose.
    pub fn indexed_by(self, index: &str) -> String {
        match self {
            Dialect::Sqlite => format!(" INDEXED BY {index}"),
            Dialect::Postgres => String::new(),
        }
    }
}

/// One connection (or a pool standing for one) to the engine, scoped to one tenant. Every
/// statement runs inside [`Db::begin`] … [`Db::commit`]: PostgreSQL sets the tenant and the role
/// per transaction there, so a statement without one would see no rows.
pub trait Db: Send {
    fn dialect(&self) -> Dialect;
    /// Starts a transaction; `write` for applying, purging and erasing (a separate role in
    /// PostgreSQL; SQLite takes its write lock at once).
    fn begin(&self, write: bool) -> Result<(), DbError>;
    fn commit(&self) -> Result<(), DbError>;
    /// Ends a failed transaction; never fails (a lost connection ends it anyway).
    fn rollback(&self);
    /// Runs a statement; returns the rows it changed.
    fn execute(&self, sql: &str, params: &[Val]) -> Result<u64, DbError>;
    fn query(&self, sql: &str, params: &[Val]) -> Result<Rows, DbError>;
    /// Runs a statement whose row count nobody needs, in order with the others: an engine may
    /// send it without waiting for its answer (PostgreSQL pipelines it; a failure is reported
    /// by the next statement, query or commit, and fails the transaction).
    fn defer(&self, sql: &str, params: &[Val]) -> Result<(), DbError> {
        self.execute(sql, params).map(|_| ())
    }
    /// After rows with content were deleted (outside a transaction): leaves nothing of them in
    /// the engine's files that a reader of the files could recover (SQLite: the write-ahead log
    /// is truncated, `attempts` tries while readers hold it; PostgreSQL: `VACUUM` of `tables`,
    /// so dead tuples are gone). Returns false when it must be tried again later.
    fn scrub(&self, tables: &[&str], attempts: u64) -> Result<bool, DbError>;
    /// After an apply moved the tenant's store from `before` to `after` events: an engine whose
    /// planner needs statistics refreshes them as a store grows (PostgreSQL: `ANALYZE` at every
    /// doubling, so plans chosen while the tables were empty do not stay).
    fn grew(&self, before: u64, after: u64) -> Result<(), DbError> {
        let _ = (before, after);
        Ok(())
    }
    /// Bytes the tenant's store takes on disk, where the engine can say (a shared database
    /// cannot per tenant).
    fn size_on_disk(&self) -> Option<u64>;
    /// Where the store is, for messages.
    fn describe(&self) -> String;
}

/// The embedded engine: one SQLite file per tenant.
pub struct SqliteDb {
    conn: rusqlite::Connection,
    path: std::path::PathBuf,
}

impl fmt::Debug for SqliteDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SqliteDb({})", self.path.display())
    }
}

/// Maps SQLite's failures onto the kinds the service acts on.
pub(crate) fn sqlite_error(e: rusqlite::Error) -> DbError {
    use rusqlite::ErrorCode::{
        CannotOpen, DatabaseCorrupt, DiskFull, NotADatabase, SystemIoFailure,
    };
    let kind = match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            DatabaseCorrupt | NotADatabase => FailureKind::Damage,
            DiskFull | SystemIoFailure | CannotOpen => FailureKind::Storage,
            _ => FailureKind::Other,
        },
        _ => FailureKind::Other,
    };
    DbError::new(kind, e.to_string())
}

fn to_sql(v: &Val) -> rusqlite::types::Value {
    use rusqlite::types::Value as S;
    match v {
        Val::Null => S::Null,
        Val::Int(i) => S::Integer(*i),
        Val::Real(r) => S::Real(*r),
        Val::Text(t) => S::Text(t.clone()),
        Val::Blob(b) => S::Blob(b.clone()),
    }
}

fn from_sql(v: rusqlite::types::ValueRef<'_>) -> Val {
    use rusqlite::types::ValueRef as S;
    match v {
        S::Null => Val::Null,
        S::Integer(i) => Val::Int(i),
        S::Real(r) => Val::Real(r),
        S::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
        S::Blob(b) => Val::Blob(b.to_vec()),
    }
}

impl SqliteDb {
    /// Opens (creating) the database file; `pragmas` run first.
    pub fn open(path: &std::path::Path, pragmas: &str) -> Result<SqliteDb, DbError> {
        let conn = rusqlite::Connection::open(path).map_err(sqlite_error)?;
        conn.execute_batch(pragmas).map_err(sqlite_error)?;
        // Every statement of apply and of the queries stays prepared.
        conn.set_prepared_statement_cache_capacity(64);
        Ok(SqliteDb {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Runs several statements without parameters (the schema).
    pub fn execute_batch(&self, sql: &str) -> Result<(), DbError> {
        self.conn.execute_batch(sql).map_err(sqlite_error)
    }

    fn bind<'a>(
        &self,
        stmt: &mut rusqlite::CachedStatement<'a>,
        params: &[Val],
    ) -> Result<(), DbError> {
        for (i, p) in params.iter().enumerate() {
            stmt.raw_bind_parameter(i + 1, to_sql(p))
                .map_err(sqlite_error)?;
        }
        Ok(())
    }
}

impl Db for SqliteDb {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn begin(&self, write: bool) -> Result<(), DbError> {
        self.conn
            .execute_batch(if write { "BEGIN IMMEDIATE" } else { "BEGIN" })
            .map_err(sqlite_error)
    }

    fn commit(&self) -> Result<(), DbError> {
        self.conn.execute_batch("COMMIT").map_err(sqlite_error)
    }

    fn rollback(&self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    fn execute(&self, sql: &str, params: &[Val]) -> Result<u64, DbError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(sqlite_error)?;
        self.bind(&mut stmt, params)?;
        stmt.raw_execute().map(|n| n as u64).map_err(sqlite_error)
    }

    fn query(&self, sql: &str, params: &[Val]) -> Result<Rows, DbError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(sqlite_error)?;
        self.bind(&mut stmt, params)?;
        let cols = stmt.column_count();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(sqlite_error)? {
            let mut row = Vec::with_capacity(cols);
            for i in 0..cols {
                row.push(from_sql(r.get_ref(i).map_err(sqlite_error)?));
            }
            out.push(row);
        }
        Ok(out)
    }

    fn scrub(&self, _tables: &[&str], attempts: u64) -> Result<bool, DbError> {
        for attempt in 0..attempts {
            let busy: i64 = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .map_err(sqlite_error)?;
            if busy == 0 {
                return Ok(true);
            }
            if attempt + 1 < attempts {
                std::thread::sleep(std::time::Duration::from_millis(5 * (attempt + 1)));
            }
        }
        Ok(false)
    }

    fn size_on_disk(&self) -> Option<u64> {
        Some(
            ["", "-wal"]
                .iter()
                .filter_map(|s| std::fs::metadata(format!("{}{s}", self.path.display())).ok())
                .map(|m| m.len())
                .sum(),
        )
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}
