//! Serving connections: plain TCP or TLS, HTTP/1.1 only, each connection in a task of its own.
//! A client has `header_timeout` to finish the TLS handshake and then to send each request's
//! headers (an idle keep-alive connection included), so a slow or stalled client holds only its
//! own connection, and only for that long. At most `max_connections` are served at once; more
//! wait in the kernel's backlog until one closes. On shutdown no new connection is accepted and
//! open ones finish their request, for at most `request_timeout`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use breakglass_core::Clock;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt as _;

use crate::signin::certificate::{CertIdentity, CertMap};
use crate::startup::config::Limits;
use crate::startup::tls::Tls;

/// What every connection is served with.
pub(crate) struct Serving {
    pub(crate) router: Router,
    /// The TLS configuration in force (swapped on SIGHUP); `None` for plain HTTP.
    pub(crate) tls: Option<watch::Receiver<Arc<Tls>>>,
    /// The `[client_certs]` mapping in force (replaced when the config file is reloaded).
    pub(crate) client_certs: Arc<CertMap>,
    pub(crate) limits: Limits,
    pub(crate) clock: Arc<dyn Clock>,
}

/// Accepts and serves connections until `shutdown` resolves, then lets open ones finish.
pub(crate) async fn serve(
    listener: TcpListener,
    serving: Serving,
    shutdown: impl Future<Output = ()>,
) {
    let serving = Arc::new(serving);
    let limits = serving.limits;
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let http = Arc::new(http);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "connection limit reached; new connections wait until one closes"
                );
                tokio::select! {
                    () = &mut shutdown => break,
                    slot = Arc::clone(&slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                }
            }
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // the listener itself is fine. A short pause keeps an exhausted process from
                    // spinning on it.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        tokio::spawn(connection(
            stream,
            peer,
            Arc::clone(&serving),
            Arc::clone(&http),
            graceful.watcher(),
            slot,
        ));
    }
    drop(listener);
    if tokio::time::timeout(limits.request_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open at shutdown were closed");
    }
}

/// Serves one connection: the TLS handshake first, if any, within the header timeout.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    serving: Arc<Serving>,
    http: Arc<hyper::server::conn::http1::Builder>,
    watcher: Watcher,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let Some(tls) = &serving.tls else {
        return serve_http(&serving, &http, TokioIo::new(stream), peer, None, watcher).await;
    };
    // Each connection takes the configuration in force when it arrives.
    let tls = Arc::clone(&tls.borrow());
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.server));
    let stream = match tokio::time::timeout(serving.limits.header_timeout, acceptor.accept(stream))
        .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(%peer, reason = %e.to_string().to_lowercase(), "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let identity = tls
        .client_name(stream.get_ref().1, serving.clock.now())
        .and_then(|cn| {
            let id = serving.client_certs.get(&cn);
            if id.is_none() {
                tracing::info!(%peer, %cn, "client certificate not mapped in `[client_certs]`");
            }
            id
        });
    serve_http(
        &serving,
        &http,
        TokioIo::new(stream),
        peer,
        identity,
        watcher,
    )
    .await;
}

async fn serve_http<IO>(
    serving: &Serving,
    http: &hyper::server::conn::http1::Builder,
    io: TokioIo<IO>,
    peer: SocketAddr,
    identity: Option<CertIdentity>,
    watcher: Watcher,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service =
        serving
            .router
            .clone()
            .map_request(move |mut req: axum::http::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                if let Some(id) = &identity {
                    req.extensions_mut().insert(id.clone());
                }
                req
            });
    let conn = http.serve_connection(io, TowerToHyperService::new(service));
    if let Err(e) = watcher.watch(conn).await {
        // A header timeout, a reset or a malformed request: the client's problem, not ours.
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}
