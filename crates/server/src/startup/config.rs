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
        }
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
