//! Real test peers for breakglass's integration tests. This crate is a dev-dependency only.

#![allow(
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test support: failing loudly with the whole context is the point"
)]
//!
//! [`Broker`] runs the real `breakglass` binary: `init` into a fresh data directory, then
//! `serve` on a free loopback port, capturing its JSON log lines. Tests drive it with the real
//! CLI ([`Broker::cli`]) or raw HTTP ([`Broker::http`]), can `kill -9` it and start it again on
//! the same data directory. Waiting is always [`poll_until`] with a generous deadline.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod pg;
pub mod sinks;
pub mod tls;
pub mod webhook;

/// How long anything in a test may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Calls `f` until it returns true or `deadline` passes; returns whether it succeeded.
pub fn poll_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The result of one CLI run.
#[derive(Debug, Clone)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Runs `cmd` to completion and captures what it printed.
    pub fn of(cmd: &mut Command) -> Self {
        let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Stdout parsed as JSON; panics with the whole run if it is not.
    pub fn json(&self) -> Value {
        match serde_json::from_str(&self.stdout) {
            Ok(v) => v,
            Err(e) => panic!("stdout is not JSON ({e}): {self:#?}"),
        }
    }

    /// Asserts success and returns stdout as JSON.
    pub fn ok_json(&self) -> Value {
        assert_eq!(self.code, 0, "command failed: {self:#?}");
        self.json()
    }
}

/// A running (or stopped) `breakglass serve` with its own data directory (and, for PostgreSQL,
/// its own database shared with any replicas).
pub struct Broker {
    bin: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    url: String,
    pub admin_token: String,
    /// The audit verifier key `init` printed.
    pub audit_key: String,
    logs: Arc<Mutex<Vec<String>>>,
    env: Vec<(String, String)>,
    /// More `serve` flags (TLS, limits); `--issuer` among them replaces the kit's.
    serve_args: Vec<String>,
    /// Environment for every CLI run against this broker (`BREAKGLASS_CA_CERT`).
    cli_env: Vec<(String, String)>,
    /// `--database` and `--key-file`, for a broker on PostgreSQL.
    postgres: Option<(String, PathBuf)>,
    /// Where a launched process reports its address once it listens.
    ready: Option<std::sync::mpsc::Receiver<String>>,
    /// The password and authenticator of every person this kit enrolled (shared with replicas,
    /// which share the store), and the last TOTP step each used.
    accounts: Arc<Mutex<std::collections::HashMap<String, Account>>>,
}

/// A person's sign-in factors as the test kit set them up.
#[derive(Clone, Debug)]
pub struct Account {
    pub password: String,
    /// The TOTP secret, base32.
    pub totp: String,
    last_step: u64,
}

/// The TOTP code (RFC 6238, SHA-1, 6 digits, 30 s) of a base32 secret at `unix_secs`.
pub fn totp_code(secret_b32: &str, unix_secs: u64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret_b32)
        .unwrap_or_else(|e| panic!("totp secret: {e:?}"));
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .build_noncompliant()
        .generate(unix_secs)
        .to_string()
}

fn unix_secs() -> u64 {
    std::time::UNIX_EPOCH
        .elapsed()
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

pub const ISSUER: &str = "http://breakglass.test";

impl Broker {
    /// Initialises a data directory, writes `roles` (file name, TOML) into its roles directory and
    /// starts serving.
    pub fn start(bin: &Path, roles: &[(&str, &str)]) -> Self {
        let mut b = Self::init(bin, roles);
        b.restart();
        b
    }

    /// Like [`Broker::start`], but stopped: set environment variables, then [`Broker::restart`].
    pub fn init(bin: &Path, roles: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let data = dir.path().join("data");
        let v = Run::of(
            Command::new(bin)
                .args(["init", "--output", "json", "--data-dir"])
                .arg(&data),
        )
        .ok_json();
        Self::initialised(bin, dir, &v, None, roles)
    }

    /// Initialises the PostgreSQL database at `database` (its key file in a temp directory) and
    /// writes `roles`; stopped, like [`Broker::init`].
    pub fn init_postgres(bin: &Path, database: &str, roles: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let key = dir.path().join("breakglass.key");
        let v = Run::of(
            Command::new(bin)
                .args([
                    "init",
                    "--output",
                    "json",
                    "--database",
                    database,
                    "--key-file",
                ])
                .arg(&key),
        )
        .ok_json();
        Self::initialised(bin, dir, &v, Some((database.to_owned(), key)), roles)
    }

    fn initialised(
        bin: &Path,
        dir: tempfile::TempDir,
        init: &Value,
        postgres: Option<(String, PathBuf)>,
        roles: &[(&str, &str)],
    ) -> Self {
        let b = Self {
            bin: bin.to_owned(),
            dir,
            child: None,
            url: String::new(),
            admin_token: init["admin_token"].as_str().unwrap_or_default().to_owned(),
            audit_key: init["audit_key"].as_str().unwrap_or_default().to_owned(),
            logs: Arc::default(),
            env: Vec::new(),
            serve_args: Vec::new(),
            cli_env: Vec::new(),
            postgres,
            ready: None,
            accounts: Arc::default(),
        };
        std::fs::create_dir_all(b.roles_dir()).unwrap_or_else(|e| panic!("roles dir: {e}"));
        for (name, text) in roles {
            b.write_role(name, text);
        }
        b
    }

    /// Another `serve` process on this broker's PostgreSQL database, with its own directory (a
    /// copy of the role files), the same key file and environment; stopped until
    /// [`Broker::restart`].
    pub fn replica(&self) -> Self {
        assert!(self.postgres.is_some(), "replicas need a PostgreSQL store");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let b = Self {
            bin: self.bin.clone(),
            dir,
            child: None,
            url: String::new(),
            admin_token: self.admin_token.clone(),
            audit_key: self.audit_key.clone(),
            logs: Arc::default(),
            env: self.env.clone(),
            serve_args: self.serve_args.clone(),
            cli_env: self.cli_env.clone(),
            postgres: self.postgres.clone(),
            ready: None,
            accounts: Arc::clone(&self.accounts),
        };
        std::fs::create_dir_all(b.roles_dir()).unwrap_or_else(|e| panic!("roles dir: {e}"));
        let files = std::fs::read_dir(self.roles_dir()).unwrap_or_else(|e| panic!("roles: {e}"));
        for f in files.flatten() {
            std::fs::copy(f.path(), b.roles_dir().join(f.file_name()))
                .unwrap_or_else(|e| panic!("copy role: {e}"));
        }
        b
    }

    /// `--database` and `--key-file` as this broker serves them, for offline commands.
    pub fn store_args(&self) -> Vec<String> {
        match &self.postgres {
            Some((db, key)) => vec![
                "--database".into(),
                db.clone(),
                "--key-file".into(),
                key.display().to_string(),
            ],
            None => vec!["--data-dir".into(), self.data_dir().display().to_string()],
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn roles_dir(&self) -> PathBuf {
        self.data_dir().join("roles")
    }

    pub fn write_role(&self, name: &str, text: &str) {
        std::fs::write(self.roles_dir().join(name), text)
            .unwrap_or_else(|e| panic!("write role: {e}"));
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Starts `serve` on the data directory (after a stop or kill) and waits until it listens.
    pub fn restart(&mut self) {
        self.launch();
        self.wait_ready();
        // The first admin enrols an authenticator at once: every admin change needs a step-up.
        let enrolled = self.accounts.lock().is_ok_and(|a| a.contains_key("admin"));
        if !enrolled && !self.admin_token.is_empty() {
            let token = self.admin_token.clone();
            self.enroll(&token, "admin", "");
        }
    }

    /// Enrols an authenticator for `user` (holding `token`), which also steps the token up.
    fn enroll(&self, token: &str, user: &str, password: &str) {
        let e = self.cli_json(token, &["totp", "enroll"]);
        let secret = e["secret"].as_str().unwrap_or_default().to_owned();
        let now = unix_secs();
        let code = totp_code(&secret, now);
        self.cli_json(token, &["totp", "confirm", &code]);
        if let Ok(mut a) = self.accounts.lock() {
            a.insert(
                user.to_owned(),
                Account {
                    password: password.to_owned(),
                    totp: secret,
                    last_step: now / 30,
                },
            );
        }
    }

    /// The password and authenticator the kit set up for `user`.
    pub fn account(&self, user: &str) -> Account {
        self.accounts
            .lock()
            .ok()
            .and_then(|a| a.get(user).cloned())
            .unwrap_or_else(|| panic!("no account `{user}` enrolled by the test kit"))
    }

    /// A TOTP code for `user` that the broker has not accepted yet (each code works once): the
    /// current step's, or the next one's, or, after both were used, the one after that once it
    /// comes.
    pub fn fresh_code(&self, user: &str) -> String {
        loop {
            let now = unix_secs();
            let step = now / 30;
            if let Ok(mut a) = self.accounts.lock() {
                let acc = a
                    .get_mut(user)
                    .unwrap_or_else(|| panic!("no account `{user}` enrolled by the test kit"));
                let want = step.max(acc.last_step + 1);
                if want <= step + 1 {
                    acc.last_step = want;
                    return totp_code(&acc.totp, want * 30);
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Runs the CLI with no token and no saved session (signing in).
    pub fn cli_anonymous(&self, args: &[&str]) -> Run {
        Run::of(
            Command::new(&self.bin)
                .args(args)
                .env("BREAKGLASS_URL", &self.url)
                .env("BREAKGLASS_TOKEN", "")
                .env("BREAKGLASS_CONFIG_DIR", self.dir.path().join("config"))
                .envs(self.cli_env.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        )
    }

    /// Writes `text` to a fresh file in the broker's temp directory (for `--password-file`).
    pub fn secret_file(&self, text: &str) -> PathBuf {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        let name: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let p = self.dir.path().join(format!("secret-{name}"));
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("secret file: {e}"));
        p
    }

    /// Starts `serve` without waiting for it (to start several replicas at the same moment);
    /// [`Broker::wait_ready`] then waits until it listens.
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut cmd = Command::new(&self.bin);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.data_dir())
            .args(&self.serve_args);
        if !self.serve_args.iter().any(|a| a == "--issuer") {
            cmd.args(["--issuer", ISSUER]);
        }
        if let Some((db, key)) = &self.postgres {
            cmd.args(["--database", db, "--key-file"]).arg(key);
        }
        let mut child = cmd
            .env("BREAKGLASS_LOG", "info")
            // Tests run longer than the default 5 minutes of a step-up; one test checks it.
            .env("BREAKGLASS_STEP_UP_WINDOW", "1h")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn serve: {e}"));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = Arc::clone(&self.logs);
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && v["fields"]["message"] == "breakglass serving"
                    {
                        let _ = tx.send(v["fields"]["url"].as_str().unwrap_or_default().to_owned());
                    }
                    if let Ok(mut l) = logs.lock() {
                        l.push(line);
                    }
                }
            });
        }
        self.child = Some(child);
        self.ready = Some(rx);
    }

    /// Waits until a [`Broker::launch`]ed process listens.
    pub fn wait_ready(&mut self) {
        let rx = self.ready.take().unwrap_or_else(|| panic!("not launched"));
        let url = rx.recv_timeout(DEADLINE).unwrap_or_else(|_| {
            self.kill9();
            panic!("broker did not start; logs:\n{}", self.logs())
        });
        self.url = url;
    }

    /// More flags for the next `serve` (TLS, limits); `--issuer` among them replaces the kit's.
    pub fn set_serve_args(&mut self, args: &[&str]) {
        self.serve_args = args.iter().map(|a| (*a).to_owned()).collect();
    }

    /// Sets an environment variable for every CLI run against this broker (for example
    /// `BREAKGLASS_CA_CERT` when it serves HTTPS).
    pub fn set_cli_env(&mut self, key: &str, value: &str) {
        self.cli_env.retain(|(k, _)| k != key);
        self.cli_env.push((key.to_owned(), value.to_owned()));
    }

    /// The broker's address (`127.0.0.1:PORT`), for raw sockets.
    pub fn addr(&self) -> std::net::SocketAddr {
        let hostport = self.url.rsplit('/').next().unwrap_or_default();
        hostport
            .parse()
            .unwrap_or_else(|e| panic!("broker address `{hostport}`: {e}"))
    }

    /// Sets an environment variable for the next `restart` (and for replicas made after).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// The running `serve` process's id (for reading its `/proc` entries), if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running (it may have exited on an error).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `kill -9`: no shutdown, no cleanup, exactly like a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal to the broker process (for example `HUP`).
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let status = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(c.id().to_string())
                .status();
            assert!(status.is_ok_and(|s| s.success()), "kill -{sig} failed");
        }
    }

    /// Every log line the broker has written so far (stdout and stderr).
    pub fn logs(&self) -> String {
        self.logs.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Runs the CLI against this broker as the holder of `token`.
    pub fn cli(&self, token: &str, args: &[&str]) -> Run {
        Run::of(
            Command::new(&self.bin)
                .args(args)
                .env("BREAKGLASS_URL", &self.url)
                .env("BREAKGLASS_TOKEN", token)
                .env("BREAKGLASS_CONFIG_DIR", self.dir.path().join("config"))
                .envs(self.cli_env.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        )
    }

    /// Runs the CLI with `--output json` and expects success.
    pub fn cli_json(&self, token: &str, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        self.cli(token, &a).ok_json()
    }

    /// A raw HTTP request sent from the local address `from` (loopback has all of 127.0.0.0/8,
    /// so `127.0.0.2` is a real second source): `(status, body)`.
    pub fn http_from(
        &self,
        from: std::net::IpAddr,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, String) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::blocking::Client::builder()
            .local_address(from)
            .build()
            .unwrap_or_else(|e| panic!("client from {from}: {e}"));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut req = client
            .request(method, format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .unwrap_or_else(|e| panic!("http from {from}: {e}"));
        (resp.status().as_u16(), resp.text().unwrap_or_default())
    }

    /// A raw HTTP request: `(status, body)`.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, String) {
        // reqwest is built without a default TLS crypto provider in this workspace (the CLI picks
        // ring); install it here too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::blocking::Client::new();
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut req = client
            .request(method, format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().unwrap_or_else(|e| panic!("http: {e}"));
        (resp.status().as_u16(), resp.text().unwrap_or_default())
    }

    /// Adds a person the way a real one starts: an admin adds them (a one-time password), they
    /// sign in and choose their own password, and enrol an authenticator. Returns their session
    /// token, stepped up.
    pub fn user(&self, name: &str, groups: &[&str]) -> String {
        let mut args = vec!["users", "add", name];
        for g in groups {
            args.extend(["--group", g]);
        }
        let added = self.cli_json(&self.admin_token, &args);
        let initial = added["initial_password"].as_str().unwrap_or_default();
        let password = format!("correct-horse-battery-{}", unix_secs());
        let first = self.secret_file(initial);
        let chosen = self.secret_file(&password);
        let r = self.cli_anonymous(&[
            "login",
            "--user",
            name,
            "--password-file",
            &first.display().to_string(),
            "--new-password-file",
            &chosen.display().to_string(),
            "--no-save",
            "--output",
            "json",
        ]);
        let token = r.ok_json()["token"].as_str().unwrap_or_default().to_owned();
        self.enroll(&token, name, &password);
        token
    }

    /// Adds a service principal and returns a token for it with `scopes`, living `ttl`.
    pub fn service(&self, name: &str, groups: &[&str], scopes: &str, ttl: &str) -> String {
        let mut args = vec!["users", "add", name, "--service"];
        for g in groups {
            args.extend(["--group", g]);
        }
        self.cli_json(&self.admin_token, &args);
        let t = self.cli_json(
            &self.admin_token,
            &[
                "tokens", "create", "--user", name, "--scopes", scopes, "--ttl", ttl,
            ],
        );
        t["token"].as_str().unwrap_or_default().to_owned()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}
