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

/// A running (or stopped) `breakglass serve` with its own data directory.
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
}

pub const ISSUER: &str = "http://breakglass.test";

impl Broker {
    /// Initialises a data directory, writes `roles` (file name, TOML) into its roles directory and
    /// starts serving.
    pub fn start(bin: &Path, roles: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let data = dir.path().join("data");
        let out = Command::new(bin)
            .args(["init", "--output", "json", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap_or_else(|e| panic!("run init: {e}"));
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("init output: {e}"));
        let admin_token = v["admin_token"].as_str().unwrap_or_default().to_owned();
        let audit_key = v["audit_key"].as_str().unwrap_or_default().to_owned();
        let mut b = Self {
            bin: bin.to_owned(),
            dir,
            child: None,
            url: String::new(),
            admin_token,
            audit_key,
            logs: Arc::default(),
            env: Vec::new(),
        };
        for (name, text) in roles {
            b.write_role(name, text);
        }
        b.restart();
        b
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
        assert!(self.child.is_none(), "already running");
        let mut child = Command::new(&self.bin)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--issuer",
                ISSUER,
                "--data-dir",
            ])
            .arg(self.data_dir())
            .env("BREAKGLASS_LOG", "info")
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
                        let _ =
                            tx.send(v["fields"]["addr"].as_str().unwrap_or_default().to_owned());
                    }
                    if let Ok(mut l) = logs.lock() {
                        l.push(line);
                    }
                }
            });
        }
        let addr = rx.recv_timeout(DEADLINE).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("broker did not start; logs:\n{}", self.logs())
        });
        self.url = format!("http://{addr}");
        self.child = Some(child);
    }

    /// Sets an environment variable for the next `restart`.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_owned(), value.to_owned()));
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
                .env("BREAKGLASS_TOKEN", token),
        )
    }

    /// Runs the CLI with `--output json` and expects success.
    pub fn cli_json(&self, token: &str, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        self.cli(token, &a).ok_json()
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

    /// Adds a user and returns an API token for them.
    pub fn user(&self, name: &str, groups: &[&str]) -> String {
        let mut args = vec!["users", "add", name];
        for g in groups {
            args.extend(["--group", g]);
        }
        self.cli_json(&self.admin_token, &args);
        let t = self.cli_json(&self.admin_token, &["tokens", "create", "--user", name]);
        t["token"].as_str().unwrap_or_default().to_owned()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}
