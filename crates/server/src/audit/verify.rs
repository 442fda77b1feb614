//! `audit verify`: the offline check of a data directory's audit log. It opens the database read
//! only, re-hashes every stored event, rebuilds the tree, and holds every checkpoint it can find
//! (in the database, in the published checkpoint log, and the one the auditor kept) against it.

use std::path::{Path, PathBuf};

use breakglass_audit::verify::{
    CheckpointOutcome, FoundCheckpoint, Problem, Rebuild, check_checkpoint, claimed_size,
};
use breakglass_audit::{Hash, NoteVerifier};
use breakglass_store::{AuditVisitor, PostgresStore, SqliteStore, Store};

use crate::StartupError;
use crate::startup::datadir::{AUDIT_ORIGIN, AUDIT_VERIFIER, CHECKPOINT_LOG_FILE, DB_FILE};

#[derive(Debug, Default, Clone)]
pub struct VerifyOptions {
    pub data_dir: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://…`.
    pub database: Option<String>,
    /// A signed checkpoint the auditor kept (the note, or `audit checkpoint --output json`).
    pub trusted: Option<PathBuf>,
    /// The verifier key to trust; without it, the key recorded in the database is used.
    pub key: Option<String>,
    /// The published checkpoint log; default `<data-dir>/checkpoints.log` if it exists.
    pub checkpoint_log: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub events: u64,
    pub root: Hash,
    pub origin: String,
    pub key: String,
    pub checkpoints_checked: usize,
    pub latest_good_checkpoint: Option<u64>,
    pub trusted_size: Option<u64>,
    pub warnings: Vec<String>,
    /// Sorted: problems that name a seq first, lowest seq first.
    pub problems: Vec<Problem>,
}

fn unusable(reason: String) -> StartupError {
    StartupError::Verify(reason)
}

pub async fn verify(opts: &VerifyOptions) -> Result<VerifyReport, StartupError> {
    let store: Box<dyn Store> = match (&opts.data_dir, &opts.database) {
        (None, Some(url)) if crate::datadir::is_postgres_url(url) => {
            Box::new(PostgresStore::open_read_only(url).await.map_err(|e| {
                unusable(format!(
                    "cannot open database `{}` read-only: {e}",
                    crate::datadir::redact_url(url)
                ))
            })?)
        }
        (data_dir, database) => {
            let db_path = match (data_dir, database) {
                (Some(d), None) => d.join(DB_FILE),
                (None, Some(url)) => {
                    let path = url
                        .strip_prefix("sqlite://")
                        .or_else(|| url.strip_prefix("sqlite:"))
                        .ok_or_else(|| {
                            unusable(format!(
                                "database `{}` is neither a `sqlite://PATH` nor a `postgres://` URL",
                                crate::datadir::redact_url(url).chars().take(60).collect::<String>()
                            ))
                        })?;
                    PathBuf::from(path)
                }
                _ => {
                    return Err(unusable(
                        "pass exactly one of `--data-dir` or `--database`".into(),
                    ));
                }
            };
            Box::new(SqliteStore::open_read_only(&db_path).await.map_err(|e| {
                unusable(format!(
                    "cannot open database `{}` read-only: {e}",
                    db_path.display()
                ))
            })?)
        }
    };
    let store = store.as_ref();
    let mut warnings = Vec::new();
    let mut problems = Vec::new();

    let origin = text_meta(store, AUDIT_ORIGIN).await?.ok_or_else(|| {
        unusable("the database has no audit origin (was it written by breakglass?)".into())
    })?;
    let stored_key = text_meta(store, AUDIT_VERIFIER).await?;
    let key_text = match (&opts.key, &stored_key) {
        (Some(pinned), stored) => {
            if stored.as_deref().map(str::trim) != Some(pinned.trim()) {
                problems.push(Problem {
                    seq: None,
                    message: format!(
                        "the database names verifier key `{}`, not the pinned key",
                        stored.clone().unwrap_or_default()
                    ),
                });
            }
            pinned.clone()
        }
        (None, Some(stored)) => {
            warnings.push("the verifier key was read from the database itself; pin the key you recorded with `--key` to rule out a re-signed log".into());
            stored.clone()
        }
        (None, None) => {
            return Err(unusable(
                "the database has no verifier key; pass `--key`".into(),
            ));
        }
    };
    let key = NoteVerifier::parse(&key_text).map_err(|e| unusable(format!("verifier key: {e}")))?;

    // Everything that names a tree size is gathered first, so the rebuild keeps exactly those roots.
    let log_path = opts
        .checkpoint_log
        .clone()
        .or_else(|| opts.data_dir.as_ref().map(|d| d.join(CHECKPOINT_LOG_FILE)));
    let mut found: Vec<FoundCheckpoint> = Vec::new();
    if let Some(p) = &log_path {
        match std::fs::read_to_string(p) {
            Ok(text) => found.extend(published(p, &text)),
            Err(e) if opts.checkpoint_log.is_some() => {
                return Err(unusable(format!(
                    "cannot read checkpoint log `{}`: {e}",
                    p.display()
                )));
            }
            Err(_) => warnings.push(format!("no published checkpoint log at `{}`", p.display())),
        }
    }
    let mut trusted_size = None;
    let trusted = match &opts.trusted {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                unusable(format!(
                    "cannot read trusted checkpoint `{}`: {e}",
                    p.display()
                ))
            })?;
            Some(FoundCheckpoint {
                source: format!("trusted checkpoint `{}`", p.display()),
                note: note_of(&text),
            })
        }
        None => None,
    };
    let mut rebuild = Rebuild::new();
    for f in found.iter().chain(trusted.iter()) {
        if let Some(size) = claimed_size(f) {
            rebuild.want(size);
        }
    }
    let snapshot = store.audit_snapshot(&mut Visit(&mut rebuild)).await?;
    store.close().await;
    let rebuilt = rebuild.finish();
    problems.extend(rebuilt.problems.iter().cloned());
    if snapshot.head_size != rebuilt.size || snapshot.head_root != rebuilt.root {
        problems.push(Problem {
            seq: Some(snapshot.head_size.min(rebuilt.size)),
            message: format!(
                "the tree head records {} events with root {}, but the stored events rebuild to {} events with root {}",
                snapshot.head_size, snapshot.head_root, rebuilt.size, rebuilt.root
            ),
        });
    }
    found.extend(snapshot.checkpoints.iter().map(|c| FoundCheckpoint {
        source: format!("database checkpoint at size {}", c.size),
        note: c.note.clone(),
    }));

    let mut checked = 0;
    let mut last_good = 0u64;
    let mut outcomes: Vec<(u64, FoundCheckpoint)> =
        found.into_iter().map(|f| (size_hint(&f), f)).collect();
    outcomes.sort_by_key(|(s, _)| *s);
    for (_, f) in &outcomes {
        checked += 1;
        match check_checkpoint(f, &key, &origin, &rebuilt, last_good) {
            CheckpointOutcome::Good(cp) => last_good = last_good.max(cp.size),
            CheckpointOutcome::Bad(p) => problems.push(p),
        }
    }
    if let Some(t) = &trusted {
        checked += 1;
        match check_checkpoint(t, &key, &origin, &rebuilt, last_good) {
            CheckpointOutcome::Good(cp) => trusted_size = Some(cp.size),
            CheckpointOutcome::Bad(p) => problems.push(p),
        }
    }
    if checked == 0 {
        warnings.push("no signed checkpoint was found: the events are consistent with each other, but nothing signed vouches for them".into());
    }
    // Problems the rebuild pinned to one event come first; then those about the head and the
    // checkpoints, which can only name where a range of damage starts.
    let (mut exact, mut rest): (Vec<Problem>, Vec<Problem>) = problems
        .into_iter()
        .partition(|p| rebuilt.problems.contains(p));
    exact.sort_by_key(|p| p.seq.unwrap_or(u64::MAX));
    rest.sort_by_key(|p| p.seq.unwrap_or(u64::MAX));
    exact.extend(rest);
    let problems = exact;
    Ok(VerifyReport {
        events: rebuilt.size,
        root: rebuilt.root,
        origin,
        key: key.encode(),
        checkpoints_checked: checked,
        latest_good_checkpoint: (last_good > 0).then_some(last_good),
        trusted_size,
        warnings,
        problems,
    })
}

/// Feeds a snapshot into the rebuild: every checkpoint's size is wanted before the events come.
struct Visit<'a>(&'a mut Rebuild);

impl AuditVisitor for Visit<'_> {
    fn checkpoints(&mut self, checkpoints: &[breakglass_store::StoredCheckpoint]) {
        for c in checkpoints {
            self.0.want(c.size);
        }
    }

    fn event(&mut self, seq: u64, bytes: &[u8], recorded_leaf: Option<Hash>) {
        self.0.event(seq, bytes, recorded_leaf);
    }
}

async fn text_meta(store: &dyn Store, name: &str) -> Result<Option<String>, StartupError> {
    Ok(store
        .secret(name)
        .await?
        .and_then(|b| String::from_utf8(b).ok()))
}

/// The checkpoints in a published checkpoint log (one JSON object per line, with `note`).
fn published(path: &Path, text: &str) -> Vec<FoundCheckpoint> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let note = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("note").and_then(|n| n.as_str()).map(str::to_owned))
                .unwrap_or_else(|| line.to_owned());
            FoundCheckpoint {
                source: format!("`{}` line {}", path.display(), i + 1),
                note,
            }
        })
        .collect()
}

/// A kept checkpoint is either the signed note itself or the JSON `audit checkpoint` printed.
fn note_of(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| {
            v.get("checkpoint")
                .and_then(|c| c.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| text.to_owned())
}

fn size_hint(f: &FoundCheckpoint) -> u64 {
    claimed_size(f).unwrap_or(u64::MAX)
}
