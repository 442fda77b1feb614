//! The `postgres` provider against a real PostgreSQL server, the one `scripts/test-postgres`
//! starts (user `postgres` trusted on loopback, every other role by SCRAM password). Each test
//! makes its own database, group role, DSN variable and marker, so they run in parallel.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::time::{Duration, Instant};

use breakglass_core::{Clock as _, GrantId, PostgresMode, SystemClock, Target, Timestamp};
use breakglass_providers::token::fingerprint;
use breakglass_providers::{
    GrantSpec, Issued, PostgresProvider, Presence, Provider, ProviderError,
};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

fn base_url() -> String {
    std::env::var("BREAKGLASS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).unwrap();
    hex::encode(b)
}

fn new_grant_id() -> GrantId {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).unwrap();
    GrantId::from_bytes(b)
}

fn now() -> Timestamp {
    SystemClock.now()
}

fn in_secs(s: i64) -> Timestamp {
    Timestamp::from_unix_millis(now().unix_millis() + s * 1000)
}

/// A database, a group role that can read its `ledger` table, and an environment variable name
/// for its admin DSN, all made for one test.
struct Fixture {
    suffix: String,
    db: String,
    dsn: String,
    env: String,
    reader: String,
    hand_made: Vec<String>,
}

impl Fixture {
    async fn new() -> Self {
        let base = base_url();
        let mut root = connect_root().await;
        let suffix = random_hex(6);
        let db = format!("bg_test_{suffix}");
        let reader = format!("bgt_reader_{suffix}");
        run(&mut root, &format!("CREATE DATABASE {db}")).await;
        run(&mut root, &format!("CREATE ROLE {reader} NOLOGIN")).await;
        root.close().await.unwrap();
        let dsn = format!("{base}/{db}");
        let mut admin = PgConnection::connect(&dsn).await.unwrap();
        run(
            &mut admin,
            &format!(
                "CREATE TABLE ledger (id int PRIMARY KEY, amount int NOT NULL);
                 INSERT INTO ledger VALUES (1, 100), (2, 200);
                 GRANT SELECT ON ledger TO {reader}"
            ),
        )
        .await;
        admin.close().await.unwrap();
        Self {
            env: format!("BG_TEST_DSN_{}", suffix.to_uppercase()),
            suffix,
            db,
            dsn,
            reader,
            hand_made: Vec::new(),
        }
    }

    /// This test's marker; `marker("")` is the main one, others share its prefix.
    fn marker(&self, variant: &str) -> String {
        format!("breakglass:test-{}{variant}", self.suffix)
    }

    fn provider(&self, variant: &str) -> PostgresProvider {
        let (env, dsn) = (self.env.clone(), self.dsn.clone());
        PostgresProvider::with_env(&self.marker(variant), move |name| {
            (name == env).then(|| dsn.clone())
        })
    }

    fn target(&self, grant: &[&str]) -> Target {
        Target::Postgres {
            dsn_env: self.env.clone(),
            mode: PostgresMode::Login,
            grant: grant.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    fn reader_target(&self) -> Target {
        self.target(&[&self.reader])
    }

    async fn admin(&self) -> PgConnection {
        PgConnection::connect(&self.dsn).await.unwrap()
    }

    async fn role_count(&self, role: &str) -> i64 {
        let mut c = self.admin().await;
        sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname = $1")
            .bind(role)
            .fetch_one(&mut c)
            .await
            .unwrap()
    }

    /// Drops the database (ending the provider's connections) and every role the test made.
    async fn cleanup(self) {
        let mut root = connect_root().await;
        run(
            &mut root,
            &format!("DROP DATABASE {} WITH (FORCE)", self.db),
        )
        .await;
        let mut roles: Vec<String> = sqlx::query_scalar(
            "SELECT rolname::text FROM pg_roles \
             WHERE starts_with(shobj_description(oid, 'pg_authid'), $1)",
        )
        .bind(self.marker(""))
        .fetch_all(&mut root)
        .await
        .unwrap();
        roles.push(self.reader.clone());
        roles.extend(self.hand_made.iter().cloned());
        for role in roles {
            run(&mut root, &format!("DROP ROLE IF EXISTS \"{role}\"")).await;
        }
    }
}

async fn connect_root() -> PgConnection {
    breakglass_testkit::pg::ensure_running();
    let base = base_url();
    PgConnection::connect(&format!("{base}/postgres"))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "no PostgreSQL at `{base}` ({e}): run `scripts/test-postgres` to start one, or set \
                 BREAKGLASS_TEST_PG"
            )
        })
}

async fn run(c: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn spec<'a>(grant: GrantId, target: &'a Target, expires_at: Timestamp) -> GrantSpec<'a> {
    GrantSpec {
        grant,
        principal: "alice@example.com",
        target,
        not_before: now(),
        expires_at,
    }
}

fn role_of(issued: &Issued) -> String {
    issued.handle.split_once('/').unwrap().1.to_owned()
}

fn password_of(issued: &Issued) -> String {
    let uri = issued.credential.expose();
    let userinfo = uri
        .strip_prefix("postgres://")
        .unwrap()
        .split_once('@')
        .unwrap()
        .0;
    userinfo.split_once(':').unwrap().1.to_owned()
}

async fn login(issued: &Issued) -> Result<PgConnection, sqlx::Error> {
    PgConnection::connect(issued.credential.expose()).await
}

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

async fn ledger_sum(c: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT sum(amount)::bigint FROM ledger")
        .fetch_one(c)
        .await
}

/// Evaluates `$cond` (which may `.await`) every 50 ms until it is true, giving how long that
/// took, or `None` once `$deadline` has passed.
macro_rules! poll_until {
    ($deadline:expr, $cond:expr) => {{
        let start = Instant::now();
        loop {
            if $cond {
                break Some(start.elapsed());
            }
            if start.elapsed() >= $deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }};
}

#[tokio::test]
async fn credential_reads_what_the_grant_role_reads_and_nothing_more() {
    let fx = Fixture::new().await;
    let p = fx.provider("");
    let target = fx.reader_target();
    let s = spec(new_grant_id(), &target, in_secs(600));
    let started = Instant::now();
    let issued = p.grant(&s).await.unwrap();
    eprintln!("grant took {:?}", started.elapsed());
    assert_eq!(
        issued.handle,
        p.handle(&s),
        "the handle is known before granting"
    );
    assert_eq!(issued.handle, format!("{}/{}", fx.env, role_of(&issued)));
    assert_eq!(issued.fingerprint, fingerprint(issued.credential.expose()));
    assert!(
        issued
            .credential
            .expose()
            .starts_with(&format!("postgres://{}:", role_of(&issued)))
    );
    assert!(
        issued
            .credential
            .expose()
            .ends_with(&format!("@127.0.0.1:5432/{}", fx.db))
    );

    let mut c = login(&issued).await.unwrap();
    let me: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(me, role_of(&issued));
    assert_eq!(ledger_sum(&mut c).await.unwrap(), 300);
    let denied = sqlx::query("INSERT INTO ledger VALUES (3, 300)")
        .execute(&mut c)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&denied).as_deref(), Some("42501"), "{denied}");
    c.close().await.unwrap();

    let mut admin = fx.admin().await;
    let (sup, createdb, createrole, repl, bypass, inherit, canlogin, comment): (
        bool,
        bool,
        bool,
        bool,
        bool,
        bool,
        bool,
        String,
    ) = sqlx::query_as(
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolinherit, \
         rolcanlogin, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
    )
    .bind(role_of(&issued))
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(!sup && !createdb && !createrole && !repl && !bypass);
    assert!(inherit && canlogin);
    assert_eq!(
        comment,
        format!("{} grant {} for alice@example.com", fx.marker(""), s.grant)
    );
    assert_eq!(
        p.check(&issued.handle, now()).await.unwrap(),
        Presence::Present
    );
    p.revoke(&issued.handle).await.unwrap();
    fx.cleanup().await;
}

#[tokio::test]
async fn grant_is_idempotent_and_replaces_the_password() {
    let fx = Fixture::new().await;
    let p = fx.provider("");
    let target = fx.reader_target();
    let s = spec(new_grant_id(), &target, in_secs(600));
    let first = p.grant(&s).await.unwrap();
    login(&first).await.unwrap().close().await.unwrap();
    let second = p.grant(&s).await.unwrap();
    assert_eq!(first.handle, second.handle);
    assert_ne!(
        first.credential, second.credential,
        "a new password each time"
    );
    assert_eq!(fx.role_count(&role_of(&second)).await, 1);

    let old = login(&first).await.unwrap_err();
    assert_eq!(sqlstate(&old).as_deref(), Some("28P01"), "{old}");
    let mut c = login(&second).await.unwrap();
    assert_eq!(ledger_sum(&mut c).await.unwrap(), 300);
    c.close().await.unwrap();
    p.revoke(&second.handle).await.unwrap();
    fx.cleanup().await;
}

#[tokio::test]
async fn revoke_ends_live_sessions_and_removes_the_role() {
    let fx = Fixture::new().await;
    let p = fx.provider("");
    let target = fx.reader_target();
    let issued = p
        .grant(&spec(new_grant_id(), &target, in_secs(600)))
        .await
        .unwrap();
    let mut held = login(&issued).await.unwrap();
    assert_eq!(ledger_sum(&mut held).await.unwrap(), 300);

    let started = Instant::now();
    p.revoke(&issued.handle).await.unwrap();
    let revoke_took = started.elapsed();
    let ended = poll_until!(
        Duration::from_secs(15),
        ledger_sum(&mut held).await.is_err()
    );
    let ended = ended.expect("the held session still answers 15 s after revoke");
    eprintln!("revoke took {revoke_took:?}; the held session failed {ended:?} after it returned");

    assert_eq!(fx.role_count(&role_of(&issued)).await, 0);
    p.revoke(&issued.handle).await.unwrap();
    assert_eq!(
        p.check(&issued.handle, now()).await.unwrap(),
        Presence::Absent
    );
    let again = login(&issued).await.unwrap_err();
    assert_eq!(sqlstate(&again).as_deref(), Some("28P01"), "{again}");
    fx.cleanup().await;
}

#[tokio::test]
async fn the_target_ends_logins_by_itself_at_valid_until() {
    let fx = Fixture::new().await;
    let p = fx.provider("");
    let target = fx.reader_target();
    let end = in_secs(2);
    let issued = p.grant(&spec(new_grant_id(), &target, end)).await.unwrap();
    let mut before_end = login(&issued).await.expect("login works before the end");
    assert_eq!(ledger_sum(&mut before_end).await.unwrap(), 300);
    assert_eq!(
        p.check(
            &issued.handle,
            Timestamp::from_unix_millis(end.unix_millis() - 1)
        )
        .await
        .unwrap(),
        Presence::Present
    );
    assert_eq!(
        p.check(&issued.handle, end).await.unwrap(),
        Presence::Absent
    );

    // No revoke: the server alone refuses logins once VALID UNTIL has passed.
    let refused = poll_until!(
        Duration::from_secs(30),
        match login(&issued).await {
            Ok(c) => {
                c.close().await.unwrap();
                false
            }
            Err(e) => {
                assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e}");
                true
            }
        }
    );
    assert!(
        refused.is_some(),
        "logins still work 30 s after VALID UNTIL"
    );
    let late_ms = now().unix_millis() - end.unix_millis();
    eprintln!("logins refused {late_ms} ms after the grant's end");
    assert!(late_ms >= 0, "refused before the end");
    assert_eq!(fx.role_count(&role_of(&issued)).await, 1);

    // Why revoke must end sessions: VALID UNTIL only stops new logins.
    assert_eq!(ledger_sum(&mut before_end).await.unwrap(), 300);
    p.revoke(&issued.handle).await.unwrap();
    let ended = poll_until!(
        Duration::from_secs(15),
        ledger_sum(&mut before_end).await.is_err()
    );
    assert!(
        ended.is_some(),
        "the session opened before the end outlived revoke"
    );
    fx.cleanup().await;
}

#[tokio::test]
async fn an_unreachable_target_fails_fast_without_leaking_the_dsn() {
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secret = "hunter2-in-the-dsn";
    let dsn = format!("postgres://postgres:{secret}@127.0.0.1:{port}/ledger");
    let bad_dsn = format!("postgres://postgres:{secret}@127.0.0.1:notaport/ledger");
    let env = format!("BG_TEST_DSN_{}", random_hex(6).to_uppercase());
    let target = Target::Postgres {
        dsn_env: env.clone(),
        mode: PostgresMode::Login,
        grant: vec!["ledger_reader".to_owned()],
    };

    let down = PostgresProvider::with_env("breakglass:test", move |_| Some(dsn.clone()));
    let s = spec(new_grant_id(), &target, in_secs(600));
    let handle = down.handle(&s);
    let started = Instant::now();
    let errors = vec![
        down.grant(&s).await.unwrap_err(),
        down.revoke(&handle).await.unwrap_err(),
        down.check(&handle, now()).await.unwrap_err(),
        down.list(&target).await.unwrap_err(),
    ];
    let took = started.elapsed();
    eprintln!("four calls to a closed port failed in {took:?}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    for e in &errors {
        assert!(matches!(e, ProviderError::Unreachable(_)), "{e:?}");
        assert!(e.is_transient());
        let text = format!("{e} {e:?}");
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    }
    assert!(!format!("{down:?}").contains(secret));

    for lookup in [None, Some(String::new()), Some(bad_dsn)] {
        let p = PostgresProvider::with_env("breakglass:test", move |_| lookup.clone());
        let started = Instant::now();
        let e = p.grant(&s).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        let text = format!("{e} {e:?}");
        assert!(matches!(e, ProviderError::Unreachable(_)), "{text}");
        assert!(text.contains(&format!("`{env}`")), "{text}");
        assert!(!text.contains(secret), "{text}");
    }
    let unset = PostgresProvider::with_env("breakglass:test", |_| None);
    assert_eq!(
        unset.grant(&s).await.unwrap_err().to_string(),
        format!(
            "target unreachable: environment variable `{env}` is not set; set it to the admin DSN \
             of the target"
        )
    );
}

#[tokio::test]
async fn a_missing_grant_role_is_a_target_error_and_leaves_nothing() {
    let fx = Fixture::new().await;
    let p = fx.provider("");
    let missing = format!("bgt_missing_{}", fx.suffix);
    let target = fx.target(&[&fx.reader, &missing]);
    let s = spec(new_grant_id(), &target, in_secs(600));
    let e = p.grant(&s).await.unwrap_err();
    assert!(matches!(e, ProviderError::Target(_)), "{e:?}");
    assert!(!e.is_transient());
    assert_eq!(
        e.to_string(),
        format!("target error: role does not exist at the target: `{missing}`")
    );
    let handle = p.handle(&s);
    assert_eq!(fx.role_count(handle.split_once('/').unwrap().1).await, 0);
    assert_eq!(p.check(&handle, now()).await.unwrap(), Presence::Absent);
    assert!(p.list(&target).await.unwrap().is_empty());
    fx.cleanup().await;
}

#[tokio::test]
async fn a_role_of_the_same_name_made_by_someone_else_is_not_taken_over() {
    let mut fx = Fixture::new().await;
    let p = fx.provider("");
    let target = fx.reader_target();
    let s = spec(new_grant_id(), &target, in_secs(600));
    let handle = p.handle(&s);
    let role = handle.split_once('/').unwrap().1.to_owned();
    fx.hand_made.push(role.clone());
    let mut admin = fx.admin().await;
    run(&mut admin, &format!("CREATE ROLE {role} NOLOGIN CREATEDB")).await;

    let e = p.grant(&s).await.unwrap_err();
    assert!(matches!(e, ProviderError::Target(_)), "{e:?}");
    assert!(
        e.to_string().contains("was not created by this breakglass"),
        "{e}"
    );
    let (canlogin, createdb): (bool, bool) =
        sqlx::query_as("SELECT rolcanlogin, rolcreatedb FROM pg_roles WHERE rolname = $1")
            .bind(&role)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert!(!canlogin && createdb, "the role was left as it was");
    assert!(p.list(&target).await.unwrap().is_empty());
    fx.cleanup().await;
}

#[tokio::test]
async fn list_returns_exactly_what_this_marker_created() {
    let mut fx = Fixture::new().await;
    let ours = fx.provider("");
    // A marker that merely starts with ours: a different installation all the same.
    let theirs = fx.provider("-other");
    let target = fx.reader_target();
    let mut mine = Vec::new();
    for _ in 0..2 {
        let issued = ours
            .grant(&spec(new_grant_id(), &target, in_secs(600)))
            .await
            .unwrap();
        mine.push(issued.handle);
    }
    let other = theirs
        .grant(&spec(new_grant_id(), &target, in_secs(600)))
        .await
        .unwrap();
    let mut admin = fx.admin().await;
    for comment in [None, Some("made by hand".to_owned())] {
        let role = format!("bg_{}", random_hex(16));
        fx.hand_made.push(role.clone());
        run(&mut admin, &format!("CREATE ROLE {role} NOLOGIN")).await;
        if let Some(c) = comment {
            run(&mut admin, &format!("COMMENT ON ROLE {role} IS '{c}'")).await;
        }
    }

    mine.sort();
    assert_eq!(ours.list(&target).await.unwrap(), mine);
    assert_eq!(theirs.list(&target).await.unwrap(), vec![other.handle]);
    let token = Target::Token {
        audience: "a".into(),
        scope: vec!["s".into()],
    };
    assert!(ours.list(&token).await.unwrap().is_empty());

    ours.revoke(&mine[0]).await.unwrap();
    assert_eq!(ours.list(&target).await.unwrap(), vec![mine[1].clone()]);
    fx.cleanup().await;
}

#[tokio::test]
async fn only_a_scram_verifier_reaches_the_server() {
    let fx = Fixture::new().await;
    // Had the server been sent the plaintext, it would store an MD5 hash here.
    let mut admin = fx.admin().await;
    run(
        &mut admin,
        &format!("ALTER DATABASE {} SET password_encryption = 'md5'", fx.db),
    )
    .await;
    let p = fx.provider("");
    let target = fx.reader_target();
    let s = spec(new_grant_id(), &target, in_secs(600));
    let issued = p.grant(&s).await.unwrap();
    let password = password_of(&issued);
    assert_eq!(password.len(), 64);
    let stored: String = sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
        .bind(role_of(&issued))
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "{stored}");
    assert!(!stored.contains(&password));
    login(&issued).await.unwrap().close().await.unwrap();

    let missing = fx.target(&["bgt_missing_role"]);
    let mut printed = vec![
        format!("{issued:?}"),
        format!("{p:?}"),
        format!(
            "{:?}",
            p.grant(&spec(s.grant, &missing, in_secs(600))).await
        ),
        format!("{:?}", p.revoke("X/bg_x").await),
        format!("{:?}", p.check(&issued.handle, now()).await),
    ];
    p.revoke(&issued.handle).await.unwrap();
    printed.push(format!("{:?}", login(&issued).await.map(|_| ())));
    for text in printed {
        assert!(!text.contains(&password), "{text}");
        assert!(!text.contains("SCRAM-SHA-256"), "{text}");
    }
    fx.cleanup().await;
}

#[tokio::test]
async fn hostile_handles_are_refused_before_any_sql() {
    // A lookup that would reach a live server, so only the parse can stop these.
    let p = PostgresProvider::with_env("breakglass:test", |_| Some(base_url()));
    for handle in [
        "X/bg_x\"; drop role postgres; --",
        "X/postgres",
        "X/bg_0123456789abcdef0123456789abcdef\"",
        "X/BG_0123456789ABCDEF0123456789ABCDEF",
        "x/bg_0123456789abcdef0123456789abcdef",
        "X; drop role postgres/bg_0123456789abcdef0123456789abcdef",
        "bg_0123456789abcdef0123456789abcdef",
        "",
    ] {
        assert!(
            matches!(p.revoke(handle).await, Err(ProviderError::BadHandle(_))),
            "{handle}"
        );
        assert!(
            matches!(
                p.check(handle, now()).await,
                Err(ProviderError::BadHandle(_))
            ),
            "{handle}"
        );
    }
    let token = Target::Token {
        audience: "a".into(),
        scope: vec!["s".into()],
    };
    assert!(matches!(
        p.grant(&spec(new_grant_id(), &token, in_secs(60))).await,
        Err(ProviderError::WrongTarget {
            kind: "postgres",
            target: "token"
        })
    ));
}
