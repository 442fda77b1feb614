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
    #[error("master key file `{path}` is missing or unreadable")]
    MasterKeyMissing { path: PathBuf },
    #[error("master key file `{path}` is not 64 hex characters")]
    MasterKeyInvalid { path: PathBuf },
    #[error("master key file `{path}` does not open this data directory's keys")]
    MasterKeyMismatch { path: PathBuf },
    #[error("cannot listen on `{addr}`: {reason}")]
    Bind { addr: String, reason: String },
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
}

impl StartupError {
    pub(crate) fn not_writable(path: &Path, e: &std::io::Error) -> Self {
        Self::DataDirNotWritable {
            path: path.to_owned(),
            reason: e.to_string().to_lowercase(),
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
                "restore `master.key` from your backup of this data directory; without it the stored keys cannot be opened"
                    .into()
            }
            Self::Bind { .. } => "pick a free address with `--listen HOST:PORT`".into(),
            Self::Roles(e) => e.help(),
            Self::RolesDir { .. } => "create the directory or point `--roles` at the one holding your role files".into(),
            Self::Verify(_) => {
                "check the paths and flags; `breakglass audit verify --help` lists them".into()
            }
            Self::Recovery(_) => {
                "name a user in the `admins` group; `breakglass users list` needs a token, so look in the audit log or the first admin `admin`"
                    .into()
            }
            Self::Store(_) | Self::Corrupt(_) => {
                "check the disk and the data directory; restore from backup if the database is damaged".into()
            }
        }
    }
}
