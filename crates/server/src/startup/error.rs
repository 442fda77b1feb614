//! Errors that stop the broker from starting, each with what to do about it.

use std::path::{Path, PathBuf};

use breakglass_core::DomainError;
use breakglass_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("data directory `{path}` is not writable: {reason}")]
    DataDirNotWritable { path: PathBuf, reason: String },
    #[error("data directory `{path}` is in use by another breakglass process")]
    DataDirLocked { path: PathBuf },
    #[error("data directory `{path}` is already initialised")]
    AlreadyInitialized { path: PathBuf },
    #[error("data directory `{path}` exists and is not empty")]
    DataDirNotEmpty { path: PathBuf },
    #[error("data directory `{path}` is not initialised")]
    NotInitialized { path: PathBuf },
    #[error("database `{url}` is not initialised")]
    DatabaseNotInitialized { url: String },
    #[error("database `{url}` is already initialised")]
    DatabaseAlreadyInitialized { url: String },
    #[error("cannot reach database `{url}`: {reason}")]
    DatabaseUnavailable { url: String, reason: String },
    #[error("key file `{path}` already exists")]
    KeyFileExists { path: PathBuf },
    #[error("{0}")]
    Usage(String),
    #[error("config file `{path}`: {message}")]
    Config { path: PathBuf, message: String },
    #[error("key file `{path}` is missing or unreadable")]
    MasterKeyMissing { path: PathBuf },
    #[error("key file `{path}` is not 64 hex characters")]
    MasterKeyInvalid { path: PathBuf },
    #[error("key file `{path}` does not open this store's keys")]
    MasterKeyMismatch { path: PathBuf },
    #[error("cannot listen on `{addr}`: {reason}")]
    Bind { addr: String, reason: String },
    #[error("refusing to serve plain HTTP on `{addr}`, which other hosts can reach")]
    PlainHttp { addr: String },
    #[error("TLS file `{path}`: {reason}")]
    Tls { path: PathBuf, reason: String },
    #[error(transparent)]
    Roles(#[from] DomainError),
    #[error("cannot read roles directory `{path}`: {reason}")]
    RolesDir { path: PathBuf, reason: String },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("data directory is damaged: {0}")]
    Corrupt(String),
    #[error("cannot recover admin access: {0}")]
    Recovery(String),
    #[error("cannot verify the audit log: {0}")]
    Verify(String),
    #[error("policy: {0}")]
    Policy(#[from] crate::policy::PolicyError),
}

impl StartupError {
    pub(crate) fn not_writable(path: &Path, e: &std::io::Error) -> Self {
        Self::DataDirNotWritable {
            path: path.to_owned(),
            reason: e.to_string().to_lowercase(),
        }
    }

    /// Whether the store could not be reached (worth retrying once it is back), as opposed to a
    /// mistake in what was asked.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::DatabaseUnavailable { .. } => true,
            Self::Store(e) => e.is_unavailable(),
            _ => false,
        }
    }

    pub fn help(&self) -> String {
        match self {
            Self::DataDirNotWritable { .. } => {
                "give the broker's user write access to the directory, or pass another `--data-dir`".into()
            }
            Self::DataDirLocked { .. } => {
                "stop the other process first; two brokers must not share one SQLite data directory".into()
            }
            Self::AlreadyInitialized { path } => format!(
                "run `breakglass serve --data-dir {}` to use it; an existing broker is never re-initialised",
                path.display()
            ),
            Self::DataDirNotEmpty { .. } => {
                "pass a new or empty directory; `init` never mixes its files with others".into()
            }
            Self::NotInitialized { path } => format!(
                "run `breakglass init --data-dir {}` first; if an earlier init was interrupted, remove the directory (it holds no grants yet) and run init again",
                path.display()
            ),
            Self::MasterKeyMissing { .. } | Self::MasterKeyInvalid { .. } | Self::MasterKeyMismatch { .. } => {
                "use the key file `init` created for this store (`<data-dir>/master.key`, or the `--key-file` every PostgreSQL replica shares) and restore it from backup if it is lost; without it the stored keys cannot be opened, and breakglass never makes a new one silently"
                    .into()
            }
            Self::DatabaseNotInitialized { url } => format!(
                "run `breakglass init --database {url} --key-file PATH` once, then start every replica with the same `--key-file`"
            ),
            Self::DatabaseAlreadyInitialized { url } => format!(
                "run `breakglass serve --database {url} --key-file PATH` with the key file made when it was initialised; an existing broker is never re-initialised"
            ),
            Self::DatabaseUnavailable { .. } => {
                "check that PostgreSQL is running and reachable from this host, and the URL's host, port, database, user and password (or `sslmode`)".into()
            }
            Self::KeyFileExists { path } => format!(
                "`init` writes a new key and never overwrites one: pass a path that does not exist yet, or, if `{}` belongs to an initialised database, serve that database with it",
                path.display()
            ),
            Self::Usage(_) => "see `breakglass serve --help`".into(),
            Self::Config { .. } => {
                "fix the config file; docs/alerts.md describes every key (secrets go in environment variables or files it names, never in the file itself)".into()
            }
            Self::Bind { .. } => "pick a free address with `--listen HOST:PORT`".into(),
            Self::PlainHttp { .. } => {
                "tokens and passwords would cross the network in clear: pass `--tls-cert FILE --tls-key FILE` to serve HTTPS (`breakglass init --self-signed-tls HOSTNAME` makes a pair to start with), or `--insecure-http` if a TLS-terminating proxy on a trusted network stands in front; or listen on loopback (`--listen 127.0.0.1:7070`)".into()
            }
            Self::Tls { .. } => {
                "pass the PEM certificate chain (the broker's certificate first) with `--tls-cert`, its PEM private key with `--tls-key`, and a PEM CA with `--client-ca`; `openssl x509 -in FILE -noout -subject -dates` shows what a certificate file holds".into()
            }
            Self::Roles(e) => e.help(),
            Self::RolesDir { .. } => "create the directory or point `--roles` at the one holding your role files".into(),
            Self::Verify(_) => {
                "check the paths and flags; `breakglass audit verify --help` lists them".into()
            }
            Self::Recovery(_) => {
                "name a user in the `admins` group; `breakglass users list` needs a token, so look in the audit log or the first admin `admin`"
                    .into()
            }
            Self::Policy(_) => {
                "fix the policy file at that line (`breakglass policy check` checks without starting); docs/policy.md describes the entities, actions and context; the policy in force is unchanged".into()
            }
            Self::Store(_) | Self::Corrupt(_) => {
                "check the disk and the data directory; restore from backup if the database is damaged".into()
            }
        }
    }
}
