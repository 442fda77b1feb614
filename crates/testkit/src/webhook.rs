//! A real HTTP receiver for webhook alerts: an axum server on a free loopback port, on its own
//! runtime thread, that checks each request's HMAC signature the way docs/alerts.md tells
//! receivers to, and records what arrived. It can be told to answer with an error status, or to
//! hang, to play a sink that is failing or stuck.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{KeyInit as _, Mac as _};
use serde_json::Value;

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub alert_id: Option<String>,
    pub timestamp: Option<String>,
    pub signature: Option<String>,
    /// Whether the signature matched the key given at start (false when there is none).
    pub signature_ok: bool,
    pub body: Value,
    pub raw: String,
    /// The status this request was answered with.
    pub status: u16,
}

#[derive(Default)]
struct Shared {
    key: Option<Vec<u8>>,
    received: Mutex<Vec<Received>>,
    status: AtomicU16,
    hang: AtomicBool,
    /// Requests that arrived, answered or not (a hanging one counts at once).
    arrived: std::sync::atomic::AtomicUsize,
}

pub struct WebhookReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The signature a sender must put in `X-Breakglass-Signature`, computed here independently of
/// breakglass: `v1=` and hex HMAC-SHA256 over `<timestamp>.<body>`.
pub fn expected_signature(key: &[u8], timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = <hmac::Hmac<sha2::Sha256>>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    shared.arrived.fetch_add(1, Ordering::SeqCst);
    if shared.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (timestamp, signature) = (
        header("x-breakglass-timestamp"),
        header("x-breakglass-signature"),
    );
    let signature_ok = match (&shared.key, &timestamp, &signature) {
        (Some(key), Some(ts), Some(sig)) => expected_signature(key, ts, &body) == *sig,
        _ => false,
    };
    let status = match shared.status.load(Ordering::SeqCst) {
        0 => StatusCode::OK,
        s => StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    };
    let raw = String::from_utf8_lossy(&body).into_owned();
    let r = Received {
        path: uri.path().to_owned(),
        alert_id: header("x-breakglass-alert-id"),
        timestamp,
        signature,
        signature_ok,
        body: serde_json::from_str(&raw).unwrap_or(Value::Null),
        raw,
        status: status.as_u16(),
    };
    if let Ok(mut l) = shared.received.lock() {
        l.push(r);
    }
    status
}

impl WebhookReceiver {
    /// Starts a receiver that checks signatures against `key` (if any) and answers 200.
    pub fn start(key: Option<&[u8]>) -> Self {
        let shared = Arc::new(Shared {
            key: key.map(<[u8]>::to_vec),
            ..Shared::default()
        });
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("bind webhook receiver: {e}"));
        let addr = std_listener
            .local_addr()
            .unwrap_or_else(|e| panic!("receiver addr: {e}"));
        std_listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("nonblocking: {e}"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(Arc::clone(&shared));
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("runtime: {e}"));
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener)
                    .unwrap_or_else(|e| panic!("listener: {e}"));
                // Not a graceful shutdown: a hanging request must not keep the test waiting.
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = stopped => {}
                }
            });
            rt.shutdown_background();
        });
        Self {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers every later request with `status` (0 means 200).
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Makes every later request hang (a stuck sink), or stops doing so.
    pub fn set_hang(&self, hang: bool) {
        self.shared.hang.store(hang, Ordering::SeqCst);
    }

    /// How many requests have arrived, including any still hanging.
    pub fn arrivals(&self) -> usize {
        self.shared.arrived.load(Ordering::SeqCst)
    }

    /// Every request answered so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared
            .received
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// The requests answered with a 2xx, i.e. the alerts delivered.
    pub fn delivered(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.set_hang(false);
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
