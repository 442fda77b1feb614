//! A real PostgreSQL for tests: a fresh database per test on the server `scripts/test-postgres`
//! starts (127.0.0.1:5432, superuser `postgres` trusted on loopback, every other role by SCRAM
//! password), plain blocking helpers to read and write it, and a TCP proxy that can take a
//! target "down" and bring it back without touching the server itself.

use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sqlx::{Connection as _, Executor as _, PgConnection, Row as _};

/// The server every test database is made on: `BREAKGLASS_TEST_PG`, default
/// `postgres://postgres@127.0.0.1:5432`.
pub fn server_url() -> String {
    std::env::var("BREAKGLASS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A small runtime of its own: a worker thread drives the connection's IO, so blocking on a
/// handle works while `Session` holds its connection mutably.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"))
}

/// 8 random bytes as hex, for names that must not collide across parallel tests.
pub fn unique() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap_or_else(|e| panic!("random: {e}"));
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Makes sure the test server answers: if nothing listens at its address, runs
/// `scripts/test-postgres` once per test process (it starts a throwaway cluster on
/// 127.0.0.1:5432, installing PostgreSQL first if needed), so `cargo test` works on a fresh
/// machine whichever test binary runs first. The script is idempotent, so test binaries racing to
/// run it is harmless. Plain blocking TCP, so it may be called from sync or async tests alike.
pub fn ensure_running() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let url = server_url();
        let hostport = url
            .rsplit('@')
            .next()
            .unwrap_or_default()
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let answers = || {
            use std::net::ToSocketAddrs as _;
            hostport
                .to_socket_addrs()
                .ok()
                .into_iter()
                .flatten()
                .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
        };
        if answers() {
            return;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/test-postgres");
        let out = std::process::Command::new("bash").arg(script).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "no PostgreSQL answers at {hostport} and `scripts/test-postgres` failed:\n{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("cannot run `scripts/test-postgres`: {e}"),
        }
    });
}

/// A database created for one test and dropped (with its connections) when the test ends.
pub struct TestDb {
    pub name: String,
    /// `postgres://postgres@127.0.0.1:5432/<name>`: the superuser on this database.
    pub url: String,
}

impl TestDb {
    /// Creates a fresh, empty database. Fails the test, naming the script to run, if no
    /// PostgreSQL answers.
    pub fn create(prefix: &str) -> Self {
        let name = format!("{prefix}_{}", unique());
        let server = server_url();
        let admin = format!("{server}/postgres");
        ensure_running();
        runtime().block_on(async {
            let mut c = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                panic!(
                    "cannot reach the test PostgreSQL at {server} ({e}); run `scripts/test-postgres` (it starts a throwaway cluster on 127.0.0.1:5432)"
                )
            });
            c.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .await
                .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        });
        Self {
            url: format!("{server}/{name}"),
            name,
        }
    }

    /// Runs statements as the superuser.
    pub fn execute(&self, sql: &str) {
        let res = Session::connect(&self.url).and_then(|mut s| s.execute(sql));
        if let Err(e) = res {
            panic!("{sql}: {e}");
        }
    }

    /// One `bigint` from the first row and column, as the superuser.
    pub fn query_i64(&self, sql: &str) -> i64 {
        Session::connect(&self.url)
            .and_then(|mut s| s.query_i64(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Every value of the first (text) column, as the superuser.
    pub fn query_strings(&self, sql: &str) -> Vec<String> {
        Session::connect(&self.url)
            .and_then(|mut s| s.query_strings(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = format!("{}/postgres", server_url());
        let name = self.name.clone();
        runtime().block_on(async {
            if let Ok(mut c) = PgConnection::connect(&admin).await {
                let _ = c
                    .execute(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .await;
            }
        });
    }
}

/// One open connection, used blocking: for holding a session across CLI calls (to see a revoke
/// end it) or trying a credential.
pub struct Session {
    rt: tokio::runtime::Runtime,
    conn: Option<PgConnection>,
}

impl Session {
    /// Connects with `url`; the error is the server's (for example a refused password).
    pub fn connect(url: &str) -> Result<Self, String> {
        let rt = runtime();
        let conn = rt
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(url)).await
            })
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        Ok(Self {
            rt,
            conn: Some(conn),
        })
    }

    fn conn(&mut self) -> Result<&mut PgConnection, String> {
        self.conn.as_mut().ok_or_else(|| "closed".to_owned())
    }

    pub fn execute(&mut self, sql: &str) -> Result<u64, String> {
        let rt = runtime_handle(&self.rt);
        let c = self.conn()?;
        rt.block_on(async {
            c.execute(sqlx::AssertSqlSafe(sql.to_owned()))
                .await
                .map(|r| r.rows_affected())
                .map_err(|e| e.to_string())
        })
    }

    pub fn query_i64(&mut self, sql: &str) -> Result<i64, String> {
        let rt = runtime_handle(&self.rt);
        let c = self.conn()?;
        rt.block_on(async {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_one(&mut *c)
                .await
                .map_err(|e| e.to_string())?;
            row.try_get::<i64, _>(0).map_err(|e| e.to_string())
        })
    }

    pub fn query_strings(&mut self, sql: &str) -> Result<Vec<String>, String> {
        let rt = runtime_handle(&self.rt);
        let c = self.conn()?;
        rt.block_on(async {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_all(&mut *c)
                .await
                .map_err(|e| e.to_string())?;
            rows.iter()
                .map(|r| r.try_get::<String, _>(0).map_err(|e| e.to_string()))
                .collect()
        })
    }
}

fn runtime_handle(rt: &tokio::runtime::Runtime) -> tokio::runtime::Handle {
    rt.handle().clone()
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(2), c.close()).await });
        }
    }
}

/// A TCP proxy in front of a server: while it is down, nothing listens on its address and every
/// connection through it is cut, exactly as if the server's host had gone away.
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl TcpProxy {
    /// A proxy on a free loopback port forwarding to `upstream`, up.
    pub fn start(upstream: SocketAddr) -> Self {
        let listener =
            TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind proxy: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("proxy addr: {e}"));
        let mut p = Self {
            addr,
            upstream,
            up: Arc::new(AtomicBool::new(false)),
            open: Arc::default(),
            acceptor: None,
        };
        p.serve(listener);
        p
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn serve(&mut self, listener: TcpListener) {
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("proxy nonblocking: {e}"));
        self.up.store(true, Ordering::SeqCst);
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, open, upstream) = (Arc::clone(&stop), Arc::clone(&self.open), self.upstream);
        let handle = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(upstream) else {
                            continue;
                        };
                        if let (Ok(c2), Ok(s2), Ok(mut l)) =
                            (client.try_clone(), server.try_clone(), open.lock())
                        {
                            l.push(c2);
                            l.push(s2);
                        }
                        pipe(&client, &server);
                        pipe(&server, &client);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        self.acceptor = Some((stop, handle));
    }

    /// Takes the target down: stops listening and cuts every open connection.
    pub fn down(&mut self) {
        if let Some((stop, handle)) = self.acceptor.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = handle.join();
        }
        if let Ok(mut l) = self.open.lock() {
            for s in l.drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        self.up.store(false, Ordering::SeqCst);
    }

    /// Brings the target back on the same address.
    pub fn up(&mut self) {
        if self.up.load(Ordering::SeqCst) {
            return;
        }
        let mut listener = None;
        // The address was ours a moment ago; allow the kernel a little time to release it.
        crate::poll_until(crate::DEADLINE, || {
            listener = TcpListener::bind(self.addr).ok();
            listener.is_some()
        });
        let listener = listener.unwrap_or_else(|| panic!("cannot rebind proxy on {}", self.addr));
        self.serve(listener);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.down();
    }
}

fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
