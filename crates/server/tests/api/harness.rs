//! One broker in process: initialised into a fresh data directory (or a fresh PostgreSQL
//! database), started with a `ManualClock`, and driven through its router with `oneshot`.
//! People are added the way real ones start: an administrator adds them (a one-time password),
//! they sign in, choose their own and enrol an authenticator, all at the manual clock's time.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use breakglass_core::{Duration, ManualClock, Timestamp};
use breakglass_server::datadir::{self, Location};
use breakglass_server::{App, ServeConfig, Server, api};
use breakglass_testkit::pg::TestDb;
use serde_json::{Value, json};
use tower::ServiceExt as _;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// A role every test can use: `sre` requests, `sre-leads` approve (quorum 1), `dba` owns it.
pub(crate) const DB_ROLE: &str = r#"
id = "db"
title = "Emergency admin on the database"
owner = "group:dba"
requesters = ["group:sre"]
default_duration = "30m"
max_duration = "1h"
max_extensions = 1
request_ttl = "10m"
[approval]
quorum = 1
approvers = ["group:sre-leads"]
[approval.emergency]
allowed = true
max_duration = "15m"
review_within = "24h"
[target]
kind = "token"
audience = "db"
scope = ["db:admin"]
"#;

/// 2026-12-01T00:00:00Z, where every test's clock starts.
const START_MS: i64 = 1_795_996_800_000;

/// Runs `test` against a fresh broker on `backend`.
pub(crate) fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(Broker) -> Fut,
    Fut: Future<Output = ()>,
{
    // The PostgreSQL database is made and dropped outside the runtime (its helpers block).
    let db = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(TestDb::create("bg_api")),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let broker =
            Broker::start(db.as_ref().map(|d| d.url.as_str()), &[("db.toml", DB_ROLE)]).await;
        let app = broker.app.clone();
        test(broker).await;
        app.close().await;
    });
    drop(rt);
    drop(db);
}

/// A broker under test.
pub(crate) struct Broker {
    pub(crate) app: Arc<App>,
    router: Router,
    pub(crate) clock: ManualClock,
    pub(crate) admin: String,
    /// Each person's TOTP secret (raw bytes) and the last step they used.
    secrets: std::sync::Mutex<std::collections::HashMap<String, (Vec<u8>, u64)>>,
    _dir: tempfile::TempDir,
}

/// A response: status and JSON body (`Null` if not JSON).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

impl Answer {
    /// The error code of a refusal.
    pub(crate) fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    pub(crate) fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }

    #[track_caller]
    pub(crate) fn ok(self) -> Value {
        assert!(self.status.is_success(), "{} {}", self.status, self.body);
        self.body
    }

    #[track_caller]
    pub(crate) fn refused(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status.as_u16(), self.code()),
            (status, code),
            "{}",
            self.body
        );
        assert!(
            !self.body["error"]["help"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "every refusal says what to do: {}",
            self.body
        );
    }
}

impl Broker {
    async fn start(postgres: Option<&str>, roles: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let clock = ManualClock::new(Timestamp::from_unix_millis(START_MS));
        let location = match postgres {
            None => Location::Dir(data.clone()),
            Some(url) => Location::Postgres {
                url: url.to_owned(),
                key_file: dir.path().join("key"),
            },
        };
        let init = datadir::init(&location, &clock).await.unwrap();
        let roles_dir: PathBuf = data.join("roles");
        std::fs::create_dir_all(&roles_dir).unwrap();
        for (name, text) in roles {
            std::fs::write(roles_dir.join(name), text).unwrap();
        }
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut config = ServeConfig::new(data, listen);
        config.location = location;
        config.issuer = Some("http://breakglass.test".into());
        let server = Server::start(config, Arc::new(clock.clone()))
            .await
            .unwrap();
        let app = server.app();
        let broker = Self {
            router: api::router(Arc::clone(&app)),
            app,
            clock,
            admin: init.admin_token.expose().to_owned(),
            secrets: std::sync::Mutex::default(),
            _dir: dir,
        };
        // The first admin enrols an authenticator, as the README has them do.
        let admin = broker.admin.clone();
        broker.enroll(&admin, "admin").await;
        broker
    }

    pub(crate) fn advance(&self, d: &str) {
        self.clock.advance(d.parse::<Duration>().unwrap());
    }

    pub(crate) fn advance_ms(&self, ms: i64) {
        self.clock
            .set(Timestamp::from_unix_millis(self.now_ms() + ms));
    }

    pub(crate) fn now_ms(&self) -> i64 {
        breakglass_core::Clock::now(&self.clock).unix_millis()
    }

    /// Sends a request through the router.
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Answer {
        let bytes = match &body {
            Value::Null => Vec::new(),
            Value::String(raw) => raw.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        };
        self.raw(method, path, token, "application/json", bytes)
            .await
    }

    /// Sends a request as if it came over a connection from `source` (an IP address).
    pub(crate) async fn call_from(
        &self,
        source: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Answer {
        let peer: SocketAddr = format!("{source}:40000").parse().unwrap();
        self.send(
            Some(peer),
            method,
            path,
            token,
            "application/json",
            body.to_string().into_bytes(),
        )
        .await
    }

    pub(crate) async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        self.send(None, method, path, token, content_type, body)
            .await
    }

    async fn send(
        &self,
        peer: Option<SocketAddr>,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", content_type);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let mut req = req.body(Body::from(body)).unwrap();
        if let Some(peer) = peer {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .unwrap();
        Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> Answer {
        self.call("GET", path, Some(token), Value::Null).await
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call("POST", path, Some(token), body).await
    }

    /// A TOTP code `user` has not used yet at the clock's time (the next step's when the current
    /// one is used up: the broker accepts one step of skew).
    pub(crate) fn code(&self, user: &str) -> String {
        let now = u64::try_from(self.now_ms() / 1000).unwrap();
        let mut secrets = self.secrets.lock().unwrap();
        let (secret, last) = secrets.get_mut(user).expect("enrolled");
        let step = (now / 30).max(*last + 1);
        assert!(
            step <= now / 30 + 1,
            "test used up its codes; advance the clock"
        );
        *last = step;
        breakglass_server::signin::crypto::totp::code_at(secret, step * 30)
    }

    /// Enrols an authenticator for the holder of `token` (which also steps it up).
    pub(crate) async fn enroll(&self, token: &str, user: &str) {
        let e = self.post("/v1/totp/enroll", token, json!({})).await.ok();
        let secret = totp_rs::Secret::try_from_base32(e["secret"].as_str().unwrap())
            .unwrap()
            .as_bytes()
            .to_vec();
        let now = u64::try_from(self.now_ms() / 1000).unwrap();
        let code = breakglass_server::signin::crypto::totp::code_at(&secret, now);
        self.secrets
            .lock()
            .unwrap()
            .insert(user.to_owned(), (secret, now / 30));
        self.post("/v1/totp/confirm", token, json!({ "code": code }))
            .await
            .ok();
    }

    /// Steps `token` up with a fresh code.
    pub(crate) async fn step_up(&self, token: &str, user: &str) {
        let code = self.code(user);
        self.post("/v1/step-up", token, json!({ "code": code }))
            .await
            .ok();
    }

    /// Adds a person the way a real one starts; returns their stepped-up session token and
    /// their password.
    pub(crate) async fn person(&self, name: &str, groups: &[&str]) -> (String, String) {
        self.step_up_admin().await;
        let added = self
            .post(
                "/v1/users",
                &self.admin.clone(),
                json!({ "name": name, "groups": groups }),
            )
            .await
            .ok();
        let password = format!("correct-horse-battery-staple-{}", name.len());
        let s = self
            .call(
                "POST",
                "/v1/login",
                None,
                json!({
                    "user": name,
                    "password": added["initial_password"],
                    "new_password": password,
                }),
            )
            .await
            .ok();
        let token = s["token"].as_str().unwrap().to_owned();
        self.enroll(&token, name).await;
        (token, password)
    }

    /// Just the session token of a new person.
    pub(crate) async fn user(&self, name: &str, groups: &[&str]) -> String {
        self.person(name, groups).await.0
    }

    /// Keeps the admin's token stepped up across clock jumps.
    pub(crate) async fn step_up_admin(&self) {
        let admin = self.admin.clone();
        let who = self.get("/v1/whoami", &admin).await.ok();
        let fresh = who["stepped_up_at"]
            .as_str()
            .and_then(Timestamp::parse_rfc3339)
            .is_some_and(|t| self.now_ms() - t.unix_millis() < 60_000);
        if !fresh {
            self.step_up(&admin, "admin").await;
        }
    }

    /// A token `user` (holding the stepped-up session `session`) makes for themself, with
    /// `scopes` (`None`: every scope).
    pub(crate) async fn own_token(
        &self,
        session: &str,
        user: &str,
        ttl: &str,
        scopes: Option<&[&str]>,
    ) -> String {
        let t = self
            .post(
                "/v1/tokens",
                session,
                json!({ "user": user, "ttl": ttl, "scopes": scopes }),
            )
            .await
            .ok();
        t["token"].as_str().unwrap().to_owned()
    }

    /// A service principal with a token holding `scopes`.
    pub(crate) async fn service(&self, name: &str, groups: &[&str], scopes: &[&str]) -> String {
        self.step_up_admin().await;
        let admin = self.admin.clone();
        self.post(
            "/v1/users",
            &admin,
            json!({ "name": name, "groups": groups, "kind": "service" }),
        )
        .await
        .ok();
        let t = self
            .post(
                "/v1/tokens",
                &admin,
                json!({ "user": name, "ttl": "1d", "scopes": scopes }),
            )
            .await
            .ok();
        t["token"].as_str().unwrap().to_owned()
    }

    /// Requests the `db` role as `token`'s holder; returns the grant id.
    pub(crate) async fn request(&self, token: &str, duration: &str) -> String {
        let g = self
            .post(
                "/v1/grants",
                token,
                json!({ "role": "db", "reason": "primary is down", "duration": duration }),
            )
            .await
            .ok();
        assert_eq!(g["state"], "requested", "{g}");
        g["id"].as_str().unwrap().to_owned()
    }

    /// A grant of `db` requested by `requester` and approved (so active) by `approver`.
    pub(crate) async fn active(&self, requester: &str, approver: &str, duration: &str) -> String {
        let id = self.request(requester, duration).await;
        let g = self
            .post(&format!("/v1/grants/{id}/approve"), approver, json!({}))
            .await
            .ok();
        assert_eq!(g["state"], "active", "{g}");
        id
    }

    pub(crate) async fn grant(&self, id: &str) -> Value {
        let admin = self.admin.clone();
        self.get(&format!("/v1/grants/{id}"), &admin).await.ok()
    }

    /// The whole audit log, oldest first.
    pub(crate) async fn audit(&self) -> Vec<Value> {
        let admin = self.admin.clone();
        self.get("/v1/audit/tail?n=10000", &admin)
            .await
            .ok()
            .as_array()
            .unwrap()
            .clone()
    }

    /// The audit events of `kind`.
    pub(crate) async fn events(&self, kind: &str) -> Vec<Value> {
        self.audit()
            .await
            .into_iter()
            .filter(|e| e["type"] == kind)
            .collect()
    }

    /// Runs the reaper's pass now, as its tick would.
    pub(crate) async fn reap(&self) {
        breakglass_server::workers::reaper::pass(&self.app.grants)
            .await
            .unwrap();
    }

    /// Runs the throttle sweep now, as it would when due.
    pub(crate) async fn sweep_throttles(&self) {
        breakglass_server::workers::throttle::pass(&self.app)
            .await
            .unwrap();
    }

    /// Runs the reconciler's pass now, as its tick would.
    pub(crate) async fn reconcile(&self) {
        breakglass_server::workers::reconciler::pass(
            &self.app.grants,
            breakglass_server::workers::reconciler::Intents::Settled,
        )
        .await
        .unwrap();
    }
}
