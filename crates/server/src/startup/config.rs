//! How `serve` is configured: flags and `BREAKGLASS_*` environment variables (parsed by the CLI),
//! passed here explicitly; no global configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the broker listens unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// The data directory used when none is given.
pub const DEFAULT_DATA_DIR: &str = "breakglass-data";

#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Where the state lives: the data directory's SQLite database (the default), or PostgreSQL.
    pub location: crate::startup::datadir::Location,
    /// The local directory: the SQLite database and its key (embedded store), the default roles
    /// directory and the default checkpoint log (both stores).
    pub data_dir: PathBuf,
    /// `roles/*.toml`; `None` means `<data-dir>/roles`.
    pub roles_dir: Option<PathBuf>,
    pub listen: SocketAddr,
    /// The `iss` of issued tokens; `None` means `http://<bound address>`.
    pub issuer: Option<String>,
    /// The least time between two reaper passes (it sleeps until its next due item).
    pub reaper_interval: Duration,
    /// How often the reconciler re-checks every open intent and sweeps targets for orphans; also
    /// the longest the reaper and the alert dispatcher sleep without looking at the store, since
    /// another replica's writes do not wake them.
    pub reconcile_interval: Duration,
    /// How long a revocation the target keeps refusing is retried before the grant is marked
    /// `failed` (the target's own end still bounds the privilege, and the orphan sweep keeps
    /// trying to remove it).
    pub revoke_give_up: Duration,
    /// How often an audit checkpoint is signed when the log has grown.
    pub checkpoint_interval: Duration,
    /// Where checkpoints are published; `None` means `<data-dir>/checkpoints.log`.
    pub checkpoint_log: Option<PathBuf>,
    /// The config file (`[alerts]`, `[channels.NAME]`); `None` means no alert channels.
    pub config_file: Option<PathBuf>,
    /// The least time between two alert dispatcher passes (it sleeps until its next due item).
    pub dispatch_interval: Duration,
    /// Password hashing workers, each keeping the 19 MiB an Argon2id hash needs.
    pub password_workers: usize,
    /// `policies/*.cedar`; `None` means `<data-dir>/policies`.
    pub policies_dir: Option<PathBuf>,
    /// Session length and step-up window.
    pub auth: crate::signin::AuthSettings,
    /// Proxies whose `X-Forwarded-For` is believed (`serve --trusted-proxy`); from any other peer
    /// the header is ignored and the peer's own address is the source.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// HTTPS: the certificate and key served, and the CA of client certificates; `None` serves
    /// plain HTTP, which [`ServeConfig::check`] allows only on loopback or with `insecure_http`.
    pub tls: Option<TlsFiles>,
    /// Serve plain HTTP on a non-loopback address (behind a TLS-terminating proxy).
    pub insecure_http: bool,
    /// What one client may hold or ask of the broker.
    pub limits: Limits,
}

/// The files of HTTPS, all PEM, read at start and again on SIGHUP.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The certificate chain, the broker's own certificate first.
    pub cert: PathBuf,
    /// The private key of the first certificate.
    pub key: PathBuf,
    /// The CA (one or more certificates) whose client certificates may stand in for a service
    /// token; see `[client_certs]` in the config file.
    pub client_ca: Option<PathBuf>,
}

/// Timeouts, the connection cap and the per-source rate limit. The defaults are what `serve`
/// uses when no flag says otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How long a client has to send a request's line and headers after connecting (or after
    /// its previous request); the TLS handshake must also finish within it.
    pub header_timeout: Duration,
    /// How long a client has to send a request's whole body once its headers are in.
    pub body_timeout: Duration,
    /// How long the broker works on one request (body included) before it answers `503`.
    pub request_timeout: Duration,
    /// Connections served at once; more wait to be accepted until one closes.
    pub max_connections: usize,
    /// Requests per source address; `None` for no limit.
    pub rate: Option<RateLimit>,
}

/// A token bucket per source address (an IPv4 address, or an IPv6 /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests a second, sustained.
    pub per_second: std::num::NonZeroU32,
    /// Requests allowed at once above the sustained rate.
    pub burst: std::num::NonZeroU32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            max_connections: 1024,
            rate: Some(RateLimit {
                per_second: nonzero(50),
                burst: nonzero(500),
            }),
        }
    }
}

/// A `--trusted-proxy` value: a network (`10.0.0.0/8`, `fd00::/8`) or one address.
pub fn parse_trusted_proxy(s: &str) -> Result<ipnet::IpNet, crate::StartupError> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            crate::StartupError::Usage(format!(
                "`--trusted-proxy {}` is not an address or a network (`10.0.0.5`, `10.0.0.0/8`, `fd00::/8`)",
                breakglass_core::text::shown(s, 60)
            ))
        })
}

impl ServeConfig {
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        Self {
            location: crate::startup::datadir::Location::Dir(data_dir.clone()),
            data_dir,
            roles_dir: None,
            listen,
            issuer: None,
            reaper_interval: Duration::from_millis(250),
            reconcile_interval: Duration::from_secs(30),
            revoke_give_up: Duration::from_secs(3600),
            checkpoint_interval: Duration::from_secs(60),
            checkpoint_log: None,
            config_file: None,
            dispatch_interval: Duration::from_millis(500),
            password_workers: crate::signin::crypto::pool::DEFAULT_WORKERS,
            policies_dir: None,
            auth: crate::signin::AuthSettings::default(),
            trusted_proxies: Vec::new(),
            tls: None,
            insecure_http: false,
            limits: Limits::default(),
        }
    }

    /// Refuses what must not be served, before anything is created or opened: plain HTTP on an
    /// address other hosts can reach (without `insecure_http`), and TLS files that do not load.
    /// Returns the TLS configuration loaded, if any.
    pub fn check(&self) -> Result<Option<crate::startup::tls::Tls>, crate::StartupError> {
        match &self.tls {
            Some(files) => crate::startup::tls::load(files).map(Some),
            None if self.listen.ip().is_loopback() || self.insecure_http => Ok(None),
            None => Err(crate::StartupError::PlainHttp {
                addr: self.listen.to_string(),
            }),
        }
    }

    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    pub fn checkpoint_log(&self) -> PathBuf {
        self.checkpoint_log.clone().unwrap_or_else(|| {
            self.data_dir
                .join(crate::startup::datadir::CHECKPOINT_LOG_FILE)
        })
    }

    pub fn policies_dir(&self) -> PathBuf {
        self.policies_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("policies"))
    }

    pub fn roles_dir(&self) -> PathBuf {
        self.roles_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("roles"))
    }
}

/// `n`, or 1 for 0 (for constants).
const fn nonzero(n: u32) -> std::num::NonZeroU32 {
    match std::num::NonZeroU32::new(n) {
        Some(v) => v,
        None => std::num::NonZeroU32::MIN,
    }
}
