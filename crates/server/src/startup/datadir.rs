//! Where a broker keeps its state, and first-time initialisation.
//!
//! Two locations: the embedded default, a data directory holding the SQLite database and its
//! `master.key` (locked, so a second broker cannot share it); or a shared PostgreSQL database that
//! any number of replicas serve at once, with the key-encryption key in a file every replica is
//! given (`--key-file`). Either way the signing keys live in the database sealed under that key.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use breakglass_audit::NoteSigner;
use breakglass_core::{
    ADMIN_GROUP, Actor, Clock, Duration, EventDraft, EventKind, Principal, PrincipalKind, Timestamp,
};
use breakglass_providers::{Secret, TokenProvider};
use std::sync::Arc;

use breakglass_store::{PostgresStore, SqliteStore, Store};

use crate::StartupError;
use crate::signin::tokens as apitoken;
use crate::startup::sealing::{Sealer, random_32};

pub const DB_FILE: &str = "breakglass.db";
pub const MASTER_KEY_FILE: &str = "master.key";
pub const LOCK_FILE: &str = "lock";
pub const INITIAL_TOKEN_FILE: &str = "initial-admin-token";
/// The name of the first admin created by `init`.
pub const FIRST_ADMIN: &str = "admin";
const JWT_KEY_SECRET: &str = "jwt-signing-key";
const AUDIT_KEY_SECRET: &str = "audit-signing-key";
/// The checkpoint origin line (and signing key name), in the clear.
pub const AUDIT_ORIGIN: &str = "audit-origin";
/// The checkpoint verifier key string, in the clear, for offline `audit verify`.
pub const AUDIT_VERIFIER: &str = "audit-verifier-key";
/// Where signed checkpoints are published outside the database unless configured otherwise.
pub const CHECKPOINT_LOG_FILE: &str = "checkpoints.log";
const FIRST_TOKEN_TTL_DAYS: i64 = 30;

/// Where a broker's state lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// The embedded default: `<dir>/breakglass.db`, sealed under `<dir>/master.key`.
    Dir(PathBuf),
    /// A PostgreSQL database shared by every replica, sealed under the key in `key_file`.
    Postgres { url: String, key_file: PathBuf },
}

impl Location {
    /// The location a `--database` value names, or the data directory when there is none.
    /// `postgres://` and `postgresql://` URLs need `key_file`; `sqlite://PATH` is not accepted
    /// here (the SQLite database lives in its data directory, next to its master key).
    pub fn from_args(
        data_dir: &Path,
        database: Option<&str>,
        key_file: Option<&Path>,
    ) -> Result<Self, StartupError> {
        match database {
            None => {
                if let Some(k) = key_file {
                    return Err(StartupError::Usage(format!(
                        "`--key-file {}` is only used with `--database postgres://…`; the embedded store keeps its key in `<data-dir>/{MASTER_KEY_FILE}`",
                        k.display()
                    )));
                }
                Ok(Self::Dir(data_dir.to_owned()))
            }
            Some(url) if is_postgres_url(url) => {
                let key_file = key_file.ok_or_else(|| {
                    StartupError::Usage(
                        "`--database postgres://…` needs `--key-file PATH` (or BREAKGLASS_KEY_FILE): the key-encryption key every replica shares".into(),
                    )
                })?;
                Ok(Self::Postgres {
                    url: url.to_owned(),
                    key_file: key_file.to_owned(),
                })
            }
            Some(other) => Err(StartupError::Usage(format!(
                "`--database` takes a `postgres://` URL, not `{}`; the embedded SQLite store is chosen by leaving `--database` out",
                redact_url(other).chars().take(80).collect::<String>()
            ))),
        }
    }

    /// What to call this location in messages (a PostgreSQL URL without its password).
    pub fn describe(&self) -> String {
        match self {
            Self::Dir(p) => format!("data directory `{}`", p.display()),
            Self::Postgres { url, .. } => format!("database `{}`", redact_url(url)),
        }
    }
}

/// Whether `s` names a PostgreSQL database.
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// `url` with any password replaced by `***`, safe for messages and logs. Passwords in a query
/// string (`?password=`) are cut off with the whole query.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    let redacted = match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => rest.to_owned(),
    };
    if scheme.is_empty() {
        redacted
    } else {
        format!("{scheme}://{redacted}")
    }
}

/// An open, initialised store with its keys unsealed.
// INVARIANT(5): everything the emergency path needs is here: the database (embedded on local disk
// by default), the keys and the local API tokens. No identity provider or other service is
// consulted to serve a request.
pub struct DataDir {
    pub location: Location,
    pub store: Arc<dyn Store>,
    pub sealer: Arc<Sealer>,
    jwt_seed: [u8; 32],
    /// Signs audit checkpoints as the log's origin.
    pub audit_signer: NoteSigner,
    // Held for the life of the process: a second broker on the same directory is refused.
    // PostgreSQL needs no lock: replicas share the database by design.
    _lock: Option<File>,
}

impl std::fmt::Debug for DataDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataDir")
            .field("store", &self.location.describe())
            .finish_non_exhaustive()
    }
}

impl DataDir {
    /// Opens an initialised store.
    pub async fn open(location: &Location, clock: &dyn Clock) -> Result<Self, StartupError> {
        let (store, key, key_path, lock): (Arc<dyn Store>, _, _, _) = match location {
            Location::Dir(path) => {
                let lock = lock(path)?;
                if !path.join(DB_FILE).exists() {
                    return Err(StartupError::NotInitialized {
                        path: path.to_owned(),
                    });
                }
                let key = read_key_file(&path.join(MASTER_KEY_FILE))?;
                let store = SqliteStore::open(&path.join(DB_FILE)).await?;
                (Arc::new(store), key, path.join(MASTER_KEY_FILE), Some(lock))
            }
            Location::Postgres { url, key_file } => {
                let key = read_key_file(key_file)?;
                let store = open_postgres(url).await?;
                (Arc::new(store), key, key_file.clone(), None)
            }
        };
        if !store.initialized().await? {
            store.close().await;
            return Err(match location {
                Location::Dir(path) => StartupError::NotInitialized {
                    path: path.to_owned(),
                },
                Location::Postgres { url, .. } => StartupError::DatabaseNotInitialized {
                    url: redact_url(url),
                },
            });
        }
        let sealer = Sealer::new(&key);
        let sealed = store.secret(JWT_KEY_SECRET).await?.ok_or_else(|| {
            StartupError::Corrupt(format!(
                "the token signing key is missing from {}",
                location.describe()
            ))
        })?;
        let seed =
            sealer
                .open(&sealed, JWT_KEY_SECRET)
                .map_err(|_| StartupError::MasterKeyMismatch {
                    path: key_path.clone(),
                })?;
        let jwt_seed: [u8; 32] = seed.try_into().map_err(|_| {
            StartupError::Corrupt("the token signing key has the wrong length".into())
        })?;
        let audit_signer =
            ensure_audit_key(store.as_ref(), &sealer, &key_path, clock.now()).await?;
        Ok(Self {
            location: location.clone(),
            store,
            sealer: Arc::new(sealer),
            jwt_seed,
            audit_signer,
            _lock: lock,
        })
    }

    pub fn token_provider(&self, issuer: &str) -> TokenProvider {
        TokenProvider::new(&self.jwt_seed, issuer)
    }
}

/// The audit log's checkpoint signer, created on first use: a random Ed25519 key sealed under
/// the master key, and an origin `breakglass/<host>/<random>` that names this log for ever.
async fn ensure_audit_key(
    store: &dyn Store,
    sealer: &Sealer,
    key_path: &Path,
    now: Timestamp,
) -> Result<NoteSigner, StartupError> {
    let damaged = |what: &str| StartupError::Corrupt(format!("the audit signing key {what}"));
    if store.secret(AUDIT_KEY_SECRET).await?.is_none() {
        let seed = random_32().map_err(|e| StartupError::Corrupt(e.to_string()))?;
        let origin = format!(
            "breakglass/{}/{}",
            host_name(),
            hex::encode(
                random_32()
                    .map_err(|e| StartupError::Corrupt(e.to_string()))?
                    .get(..4)
                    .unwrap_or_default()
            )
        );
        let signer =
            NoteSigner::new(&origin, &seed).map_err(|e| StartupError::Corrupt(e.to_string()))?;
        let sealed = sealer
            .seal(&seed, AUDIT_KEY_SECRET)
            .map_err(|e| StartupError::Corrupt(e.to_string()))?;
        let key = signer.verifier().encode();
        let event = EventDraft::new(
            Actor::System("init"),
            None,
            EventKind::AuditKeyCreated {
                origin: origin.clone(),
                key: key.clone(),
            },
        );
        store
            .add_secrets(
                &[
                    (AUDIT_KEY_SECRET, sealed),
                    (AUDIT_ORIGIN, origin.into_bytes()),
                    (AUDIT_VERIFIER, key.into_bytes()),
                ],
                &[event],
                now,
            )
            .await?;
    }
    let sealed = store
        .secret(AUDIT_KEY_SECRET)
        .await?
        .ok_or_else(|| damaged("is missing"))?;
    let seed: [u8; 32] = sealer
        .open(&sealed, AUDIT_KEY_SECRET)
        .map_err(|_| StartupError::MasterKeyMismatch {
            path: key_path.to_owned(),
        })?
        .try_into()
        .map_err(|_| damaged("has the wrong length"))?;
    let origin = store
        .secret(AUDIT_ORIGIN)
        .await?
        .ok_or_else(|| damaged("has no origin"))?;
    let origin = String::from_utf8(origin).map_err(|_| damaged("origin is not text"))?;
    NoteSigner::new(&origin, &seed).map_err(|e| StartupError::Corrupt(e.to_string()))
}

/// This machine's name as a note key name allows it (no spaces, no `+`).
fn host_name() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(63)
        .collect();
    if clean.is_empty() {
        "localhost".into()
    } else {
        clean
    }
}

/// Whether `path` holds an initialised broker (a database file is there).
pub fn is_initialized(path: &Path) -> bool {
    path.join(DB_FILE).exists()
}

/// Creates the store, its key-encryption key, the token signing key and the first admin with an
/// API token, which is returned to be shown once. Refuses a store that is already initialised,
/// and never overwrites an existing key file.
pub async fn init(location: &Location, clock: &dyn Clock) -> Result<Initialized, StartupError> {
    match location {
        Location::Dir(path) => init_dir(path, clock).await,
        Location::Postgres { url, key_file } => init_postgres(url, key_file, clock).await,
    }
}

async fn init_dir(path: &Path, clock: &dyn Clock) -> Result<Initialized, StartupError> {
    if is_initialized(path) {
        return Err(StartupError::AlreadyInitialized {
            path: path.to_owned(),
        });
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| StartupError::not_writable(path, &e))?;
    // An existing directory must be empty: `init` takes it over and tightens it to 0700.
    let occupied = fs::read_dir(path)
        .map_err(|e| StartupError::not_writable(path, &e))?
        .next()
        .is_some();
    if occupied {
        return Err(StartupError::DataDirNotEmpty {
            path: path.to_owned(),
        });
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(|e| StartupError::not_writable(path, &e))?;
    let _lock = lock(path)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path.join("roles"))
        .map_err(|e| StartupError::not_writable(path, &e))?;
    let key = random_32().map_err(|e| StartupError::Corrupt(e.to_string()))?;
    let key_path = path.join(MASTER_KEY_FILE);
    write_new_file(&key_path, hex::encode(key).as_bytes())?;
    // Create the database file 0600 before SQLite opens it: SQLite gives its WAL and shm files
    // the database file's mode.
    write_new_file(&path.join(DB_FILE), b"")?;
    let store = SqliteStore::open(&path.join(DB_FILE)).await?;
    let done = initialize(&store, &key, &key_path, clock).await;
    store.close().await;
    done
}

async fn init_postgres(
    url: &str,
    key_file: &Path,
    clock: &dyn Clock,
) -> Result<Initialized, StartupError> {
    if key_file.exists() {
        return Err(StartupError::KeyFileExists {
            path: key_file.to_owned(),
        });
    }
    let store = open_postgres(url).await?;
    if store.initialized().await? {
        store.close().await;
        return Err(StartupError::DatabaseAlreadyInitialized {
            url: redact_url(url),
        });
    }
    let key = random_32().map_err(|e| StartupError::Corrupt(e.to_string()))?;
    if let Err(e) = write_new_file(key_file, hex::encode(key).as_bytes()) {
        store.close().await;
        return Err(e);
    }
    let done = initialize(&store, &key, key_file, clock).await;
    store.close().await;
    if done.is_err() {
        // Nothing was sealed under this key (the initialisation is one transaction), so the file
        // would only mislead: remove it so that `init` can be run again.
        let _ = fs::remove_file(key_file);
    }
    done
}

/// Connects to PostgreSQL, turning "cannot reach it" into a message that names the database
/// (without its password) and says what to check.
async fn open_postgres(url: &str) -> Result<PostgresStore, StartupError> {
    PostgresStore::open(url).await.map_err(|e| {
        if e.is_unavailable() {
            StartupError::DatabaseUnavailable {
                url: redact_url(url),
                reason: e.to_string(),
            }
        } else {
            StartupError::Store(e)
        }
    })
}

/// The first admin, the sealed keys and the opening events, in one transaction.
async fn initialize(
    store: &dyn Store,
    key: &[u8; 32],
    key_path: &Path,
    clock: &dyn Clock,
) -> Result<Initialized, StartupError> {
    let sealer = Sealer::new(key);
    let seed = random_32().map_err(|e| StartupError::Corrupt(e.to_string()))?;
    let sealed_seed = sealer
        .seal(&seed, JWT_KEY_SECRET)
        .map_err(|e| StartupError::Corrupt(e.to_string()))?;
    let kid = TokenProvider::new(&seed, "").kid().to_owned();

    let now = clock.now();
    let admin = Principal {
        name: FIRST_ADMIN.parse()?,
        kind: PrincipalKind::Human,
        groups: BTreeSet::from([ADMIN_GROUP.parse()?]),
        disabled: false,
        created_at: now,
    };
    let token = apitoken::issue(
        FIRST_ADMIN,
        breakglass_store::TokenKind::Api,
        None,
        Duration::from_secs(FIRST_TOKEN_TTL_DAYS * 86_400),
        now,
    )
    .map_err(|e| StartupError::Corrupt(e.to_string()))?;
    let init = Actor::System("init");
    let events = [
        EventDraft::new(
            init.clone(),
            None,
            EventKind::BrokerInitialized {
                admin: FIRST_ADMIN.into(),
                jwt_kid: kid,
            },
        ),
        EventDraft::new(
            init.clone(),
            None,
            EventKind::PrincipalCreated {
                name: FIRST_ADMIN.into(),
                kind: "human".into(),
                groups: vec![ADMIN_GROUP.into()],
            },
        ),
        EventDraft::new(
            init,
            None,
            EventKind::TokenCreated {
                token_id: token.record.id.clone(),
                principal: FIRST_ADMIN.into(),
                expires_at: token.record.expires_at,
                scopes: None,
            },
        ),
    ];
    store
        .initialize(
            &admin,
            &token.record,
            &[(JWT_KEY_SECRET, sealed_seed)],
            &events,
            now,
        )
        .await?;
    let audit_key = ensure_audit_key(store, &sealer, key_path, now)
        .await?
        .verifier()
        .encode();
    Ok(Initialized {
        admin_token: token.secret,
        audit_key,
    })
}

/// Issues a new API token for an admin straight into the store: the way back in when every admin
/// token has expired or been lost. It needs what only the store's owner has: the data directory
/// with its master key (the broker stopped; the directory lock guarantees that), or the PostgreSQL
/// database and its key file (replicas may keep running). Audited as `token.created` by
/// `system:recovery`.
pub async fn recover_admin(
    location: &Location,
    user: &str,
    ttl: Duration,
    clock: &dyn Clock,
) -> Result<(Secret, breakglass_store::ApiToken), StartupError> {
    let data = DataDir::open(location, clock).await?;
    let p = data
        .store
        .principal(user)
        .await?
        .ok_or_else(|| StartupError::Recovery(format!("there is no user `{user}`")))?;
    if !p.is_admin() || p.disabled {
        return Err(StartupError::Recovery(format!(
            "user `{user}` is not an enabled member of `{ADMIN_GROUP}`"
        )));
    }
    let now = clock.now();
    let token = apitoken::issue(
        p.name.as_str(),
        breakglass_store::TokenKind::Api,
        None,
        ttl,
        now,
    )
    .map_err(|e| StartupError::Corrupt(e.to_string()))?;
    let event = EventDraft::new(
        Actor::System("recovery"),
        None,
        EventKind::TokenCreated {
            token_id: token.record.id.clone(),
            principal: p.name.to_string(),
            expires_at: token.record.expires_at,
            scopes: None,
        },
    );
    data.store
        .create_token(&token.record, &[event], now)
        .await?;
    data.store.close().await;
    Ok((token.secret, token.record))
}

/// What `init` created that its operator must see.
#[derive(Debug)]
pub struct Initialized {
    /// The first admin's API token, shown once.
    pub admin_token: Secret,
    /// The audit log's verifier key: record it where the broker's host cannot change it.
    pub audit_key: String,
}

/// Writes the first admin token to a 0600 file when there is no terminal to show it on.
pub fn write_initial_token(path: &Path, token: &Secret) -> Result<PathBuf, StartupError> {
    let file = path.join(INITIAL_TOKEN_FILE);
    write_new_file(&file, format!("{}\n", token.expose()).as_bytes())?;
    Ok(file)
}

fn lock(path: &Path) -> Result<File, StartupError> {
    let meta = fs::metadata(path).map_err(|e| StartupError::not_writable(path, &e))?;
    if !meta.is_dir() {
        return Err(StartupError::DataDirNotWritable {
            path: path.to_owned(),
            reason: "it is not a directory".into(),
        });
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path.join(LOCK_FILE))
        .map_err(|e| StartupError::not_writable(path, &e))?;
    // Probe writability for real: permission bits say nothing when running as root on a
    // read-only mount.
    let probe = path.join(".write-probe");
    File::create(&probe)
        .and_then(|mut f| f.write_all(b"ok").and_then(|()| f.sync_all()))
        .map_err(|e| StartupError::not_writable(path, &e))?;
    let _ = fs::remove_file(&probe);
    file.try_lock().map_err(|_| StartupError::DataDirLocked {
        path: path.to_owned(),
    })?;
    Ok(file)
}

/// Reads a key-encryption key: 64 hex characters (what `init` writes), 0600.
fn read_key_file(file: &Path) -> Result<[u8; 32], StartupError> {
    let file = file.to_owned();
    let text = fs::read_to_string(&file)
        .map_err(|_| StartupError::MasterKeyMissing { path: file.clone() })?;
    let bytes = hex::decode(text.trim())
        .map_err(|_| StartupError::MasterKeyInvalid { path: file.clone() })?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StartupError::MasterKeyInvalid { path: file.clone() })?;
    if let Ok(meta) = fs::metadata(&file)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(file = %file.display(), "master key file is readable by group or others; chmod 600 it");
    }
    Ok(key)
}

fn write_new_file(file: &Path, contents: &[u8]) -> Result<(), StartupError> {
    let mut f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| StartupError::not_writable(file, &e))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(|e| StartupError::not_writable(file, &e))
}
