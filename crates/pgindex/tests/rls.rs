//! Row-level security is the database's, not agentrail's: connected as the query role with one
//! tenant set, a `SELECT` with no `WHERE` returns that tenant's rows only, and none with no
//! tenant set; the query role cannot write, the apply role cannot write another tenant's rows,
//! neither role bypasses the policies. And the store survives PostgreSQL restarting under it:
//! the next apply continues from what the database committed, nothing lost or applied twice.

use agentrail_event::{TenantId, validate_value};
use agentrail_index::{EventFilter, PageReq, Store, TenantIndex};
use agentrail_ledger::{Config, Ledger};
use agentrail_pgindex::PgStore;
use agentrail_pgindex::schema::{APPLY_ROLE, QUERY_ROLE};
use agentrail_testkit::Generator;
use agentrail_testkit::postgres::Server;

fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn ledger_with(dir: &std::path::Path, tenants: &[(&str, usize)]) -> Ledger {
    let mut cfg = Config::new(dir);
    cfg.checkpoint_interval = None;
    let ledger = Ledger::open(cfg).unwrap();
    for (i, (t, n)) in tenants.iter().enumerate() {
        append(&ledger, t, i as u64, *n);
    }
    ledger
}

fn append(ledger: &Ledger, t: &str, seed: u64, n: usize) {
    let events: Vec<_> = Generator::new(seed, t, 4)
        .with_id_prefix(&format!("{t}-{seed}"))
        .take(n)
        .map(|mut e| {
            e.as_object_mut().unwrap().remove("tenant_id");
            validate_value(e).unwrap()
        })
        .collect();
    for chunk in events.chunks(100) {
        ledger.append(&tenant(t), chunk.to_vec()).unwrap();
    }
}

/// A login role that is only a member of `role`, as an operator would give a BI tool.
fn login_as(pg: &Server, login: &str, role: &str) -> postgres::Client {
    pg.psql(
        "agentrail",
        &format!("CREATE ROLE {login} LOGIN; GRANT {role} TO {login}"),
    );
    let mut c = postgres::Client::connect(
        &format!("postgres://{login}@127.0.0.1:{}/agentrail", pg.port()),
        postgres::NoTls,
    )
    .unwrap();
    c.batch_execute(&format!("SET ROLE {role}; SET search_path = agentrail"))
        .unwrap();
    c
}

fn count(c: &mut postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn the_database_itself_keeps_each_tenant_to_its_own_rows() {
    let pg = Server::start();
    let url = pg.create_db("agentrail");
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger_with(dir.path(), &[("alpha", 300), ("bravo", 200)]);
    let store = PgStore::connect(&url).unwrap();
    assert_eq!(store.schema_version().unwrap(), 1);
    for t in ["alpha", "bravo"] {
        store.open(&tenant(t)).unwrap().catch_up(&ledger).unwrap();
    }
    // The superuser (past the policies: it owns nothing here, it bypasses) sees both.
    assert_eq!(
        pg.psql("agentrail", "SELECT count(*) FROM agentrail.events")
            .trim(),
        "500"
    );

    let mut q = login_as(&pg, "auditor", QUERY_ROLE);
    // No tenant set: nothing, in every table.
    for table in agentrail_index::TABLES {
        assert_eq!(
            count(&mut q, &format!("SELECT count(*) FROM {table}")),
            0,
            "{table} without a tenant"
        );
    }
    // One tenant set: its rows only, with no WHERE clause at all.
    for (t, n) in [("alpha", 300), ("bravo", 200)] {
        q.batch_execute(&format!("SET agentrail.tenant = '{t}'"))
            .unwrap();
        assert_eq!(count(&mut q, "SELECT count(*) FROM events"), n);
        let others: i64 = q
            .query_one(
                "SELECT count(*) FROM events WHERE tenant_id <> current_setting('agentrail.tenant')",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(others, 0);
        for table in ["causes", "attrs", "tool_minutes", "meta"] {
            let rows: Vec<String> = q
                .query(&format!("SELECT DISTINCT tenant_id FROM {table}"), &[])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert_eq!(rows, vec![t.to_owned()], "{table}");
        }
        // Naming the other tenant explicitly finds nothing either.
        let other = if t == "alpha" { "bravo" } else { "alpha" };
        assert_eq!(
            count(
                &mut q,
                &format!("SELECT count(*) FROM events WHERE tenant_id = '{other}'")
            ),
            0
        );
    }
    // The query role reads; it cannot write.
    let err = q.batch_execute("DELETE FROM events").unwrap_err();
    let msg = err
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    assert!(msg.contains("permission denied"), "{msg}");

    // The apply role writes only rows of the tenant set for it.
    let mut w = login_as(&pg, "applier", APPLY_ROLE);
    w.batch_execute("SET agentrail.tenant = 'alpha'").unwrap();
    let err = w
        .batch_execute("INSERT INTO meta (tenant_id, key, value) VALUES ('bravo', 'x', 1)")
        .unwrap_err();
    let msg = err
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    assert!(msg.contains("row-level security"), "{msg}");
    // A delete with no WHERE clause deletes alpha's rows, and only those.
    w.batch_execute("DELETE FROM tokens; DELETE FROM attrs")
        .unwrap();
    assert_ne!(
        pg.psql(
            "agentrail",
            "SELECT count(*) FROM agentrail.attrs WHERE tenant_id = 'bravo'"
        )
        .trim(),
        "0"
    );
    // Neither role can bypass the policies, and the tables force them on their owner.
    let flags = pg.psql(
        "agentrail",
        &format!(
            "SELECT string_agg(rolname || ':' || rolbypassrls || rolsuper, ',' ORDER BY rolname)
             FROM pg_roles WHERE rolname IN ('{QUERY_ROLE}', '{APPLY_ROLE}')"
        ),
    );
    assert_eq!(
        flags.trim(),
        format!("{APPLY_ROLE}:falsefalse,{QUERY_ROLE}:falsefalse")
    );
    let forced = pg.psql(
        "agentrail",
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'agentrail' AND c.relkind = 'r' AND c.relname <> 'migrations'
           AND c.relrowsecurity AND c.relforcerowsecurity",
    );
    assert_eq!(forced.trim(), agentrail_index::TABLES.len().to_string());
    // Each tenant's index through agentrail answers for itself only.
    let ib = store.open(&tenant("bravo")).unwrap();
    let page = ib
        .events(&EventFilter::default(), &PageReq::first(1000))
        .unwrap();
    assert_eq!(page.items.len(), 200);
    assert!(page.items.iter().all(|e| e.event_id.starts_with("bravo-1")));
    // Migrations run once: a second node connecting finds the schema at its version.
    assert_eq!(PgStore::connect(&url).unwrap().schema_version().unwrap(), 1);
    assert_eq!(
        pg.psql("agentrail", "SELECT count(*) FROM agentrail.migrations")
            .trim(),
        "1"
    );
}

#[test]
fn a_restarted_database_loses_nothing_and_applies_nothing_twice() {
    let mut pg = Server::start();
    let url = pg.create_db("agentrail");
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger_with(dir.path(), &[("acme", 2000)]);
    let t = tenant("acme");
    let store = PgStore::connect_with(&url, 2, std::time::Duration::from_millis(500)).unwrap();
    let mut index: TenantIndex = store.open(&t).unwrap();
    index
        .apply(&ledger.read_range(&t, 0, 700).unwrap())
        .unwrap();

    // Killed (no checkpoint, crash recovery at start) between two batches.
    pg.stop();
    let err = index
        .apply(&ledger.read_range(&t, 700, 700).unwrap())
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert_eq!(index.applied(), 700);
    // The ledger goes on growing meanwhile.
    append(&ledger, "acme", 9, 300);
    pg.resume();
    // The same handle reconnects and catches up from what the database committed.
    index.catch_up(&ledger).unwrap();
    assert_eq!(index.applied(), 2300);
    assert_eq!(index.stored_applied().unwrap(), 2300);
    let rows = pg.psql(
        "agentrail",
        "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM agentrail.events",
    );
    assert_eq!(rows.trim(), "2300|2300|0|2299");

    // A handle whose last commit reached the database but whose answer was lost (here: a
    // second handle that applied behind its back) skips what is there instead of failing.
    let mut stale = store.open(&t).unwrap();
    append(&ledger, "acme", 10, 50);
    index.catch_up(&ledger).unwrap();
    stale
        .apply(&ledger.read_range(&t, 2300, 50).unwrap())
        .unwrap();
    assert_eq!(stale.applied(), 2350);
    assert_eq!(
        pg.psql("agentrail", "SELECT count(*) FROM agentrail.events")
            .trim(),
        "2350"
    );
}

#[test]
fn two_deployments_sharing_a_database_never_mix_one_tenant_ids_rows() {
    let pg = Server::start();
    let url = pg.create_db("agentrail");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Two ledgers (two keys), each with its own tenant "acme".
    let (la, lb) = (
        ledger_with(a.path(), &[("acme", 100)]),
        ledger_with(b.path(), &[("acme", 150)]),
    );
    let store = PgStore::connect(&url).unwrap();
    let t = tenant("acme");
    store.open(&t).unwrap().catch_up(&la).unwrap();
    let err = store.open(&t).unwrap().catch_up(&lb).unwrap_err();
    assert!(
        matches!(err, agentrail_index::IndexError::OtherLedger { .. }),
        "{err}"
    );
    assert!(
        !err.is_damage(),
        "another deployment's rows are not damage to delete"
    );
    assert_eq!(
        pg.psql("agentrail", "SELECT count(*) FROM agentrail.events")
            .trim(),
        "100"
    );
    // The first deployment goes on.
    append(&la, "acme", 5, 10);
    assert_eq!(store.open(&t).unwrap().catch_up(&la).unwrap(), 10);
}
