//! A fresh PostgreSQL database per test on the server `scripts/test-postgres` starts, and a TCP
//! proxy that can take that server "away" from a store without touching the server itself.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::{Connection as _, PgConnection};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The server every test database is made on: `BREAKGLASS_TEST_PG`, default
/// `postgres://postgres@127.0.0.1:5432` (superuser `postgres`, trusted on loopback).
pub(crate) fn server_url() -> String {
    std::env::var("BREAKGLASS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A database made for one test; dropped (with any connection still open to it) when the value
/// is, even if the test panicked.
pub(crate) struct TestDb {
    pub(crate) name: String,
    /// `<server>/<name>`, as the superuser.
    pub(crate) url: String,
}

impl TestDb {
    /// Creates a fresh, empty database, or fails the test naming the script to run.
    pub(crate) async fn create() -> Self {
        let server = server_url();
        let mut admin = admin_connection(&server).await;
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).unwrap();
        let name = format!(
            "bg_test_{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("create database `{name}`: {e}"));
        let _ = admin.close().await;
        Self {
            url: format!("{server}/{name}"),
            name,
        }
    }

    /// A superuser session on this database, for arranging and inspecting it from outside.
    pub(crate) async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect to `{}`: {e}", self.name))
    }

    /// Polls until at least `n` sessions on this database wait for a lock (the writes under test
    /// have reached the lock the test holds).
    pub(crate) async fn wait_for_lock_waiters(&self, n: i64) {
        let mut c = self.connect().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
            )
            .bind(&self.name)
            .fetch_one(&mut c)
            .await
            .unwrap();
            if waiting >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {waiting} of {n} sessions ever waited for the lock"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Best effort, on a thread of its own: `Drop` cannot await, and the test's runtime may be
        // unwinding.
        let server = server_url();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect(&format!("{server}/postgres")).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut c)
                    .await;
                }
            });
        });
        let _ = dropped.join();
    }
}

async fn admin_connection(server: &str) -> PgConnection {
    breakglass_testkit::pg::ensure_running();
    let admin = format!("{server}/postgres");
    let failed = |why: String| -> ! {
        panic!(
            "cannot reach the test PostgreSQL at `{server}` ({why}); run `scripts/test-postgres` (it starts a throwaway cluster on 127.0.0.1:5432), or point BREAKGLASS_TEST_PG at a server where `postgres` may create databases"
        )
    };
    match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(&admin)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => failed(e.to_string()),
        Err(_) => failed("no answer within 10 s".into()),
    }
}

/// Forwards a local port to the test server until [`Proxy::cut`], which closes the port and every
/// connection through it, as a database host that went away would.
pub(crate) struct Proxy {
    pub(crate) port: u16,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub(crate) async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let upstream = upstream.to_owned();
        let spawned = Arc::clone(&tasks);
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                spawned.lock().unwrap().push(task);
            }
        });
        Self {
            port,
            tasks,
            accept,
        }
    }

    pub(crate) fn cut(&self) {
        self.accept.abort();
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// `host:port` of the test server, for the proxy to forward to.
pub(crate) fn server_addr() -> String {
    let url = server_url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    host.split('/').next().unwrap().to_owned()
}

/// A URL for database `name` on the test server, but through `proxy`.
pub(crate) fn via_proxy(proxy: &Proxy, name: &str) -> String {
    let url = server_url();
    let addr = server_addr();
    let base = url.replacen(&addr, &format!("127.0.0.1:{}", proxy.port), 1);
    format!("{base}/{name}")
}
