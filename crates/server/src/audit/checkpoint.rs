//! Signing audit checkpoints and publishing them outside the database.
//!
//! A checkpoint is signed when the log has grown since the last one: on a schedule, after every
//! break-glass activation, and whenever someone asks for the latest. Each is kept in the database
//! and appended, as one JSON line, to the checkpoint log file (`<data-dir>/checkpoints.log` by
//! default), which an operator ships somewhere the database's owner cannot rewrite.

use std::io::Write as _;
use std::path::PathBuf;

use breakglass_audit::{Checkpoint, NoteSigner};
use breakglass_core::Timestamp;
use breakglass_store::{Store, StoredCheckpoint};
use serde_json::json;

use crate::error::ServiceError;

#[derive(Debug)]
pub struct Checkpointer {
    signer: NoteSigner,
    /// The log's origin line and verifier key, fixed for the signer's life.
    origin: String,
    verifier_key: String,
    log_path: PathBuf,
    /// One signer at a time, so two callers never race to sign the same size. Holds the size of
    /// the last checkpoint this process published to the file.
    lock: tokio::sync::Mutex<u64>,
}

impl Checkpointer {
    pub(crate) fn new(signer: NoteSigner, log_path: PathBuf) -> Self {
        let verifier = signer.verifier();
        Self {
            origin: verifier.name().to_owned(),
            verifier_key: verifier.encode(),
            signer,
            log_path,
            lock: tokio::sync::Mutex::new(0),
        }
    }

    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier key string (`<name>+<hex id>+<base64 key>`).
    pub(crate) fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    /// The latest checkpoint, signing and publishing a new one first if the log grew.
    pub(crate) async fn latest(
        &self,
        store: &dyn Store,
        now: Timestamp,
    ) -> Result<StoredCheckpoint, ServiceError> {
        let mut published = self.lock.lock().await;
        let (size, root) = store.audit_head().await?;
        if let Some(cp) = store.latest_checkpoint().await?
            && cp.size >= size
        {
            // A checkpoint whose publication failed (or that another process signed) is
            // published again until the file has it.
            if cp.size > *published && self.publish(cp.size, &cp.note, cp.signed_at) {
                *published = cp.size;
            }
            return Ok(cp);
        }
        let text = Checkpoint {
            origin: self.origin.clone(),
            size,
            root,
        }
        .to_text();
        let note = self.signer.sign(&text).map_err(|e| {
            ServiceError::Store(breakglass_store::StoreError::Corrupt(e.to_string()))
        })?;
        store.save_checkpoint(size, &note, now).await?;
        if self.publish(size, &note, now) {
            *published = size;
        }
        Ok(StoredCheckpoint {
            size,
            note,
            signed_at: now,
        })
    }

    /// Appends to the checkpoint log and syncs it. A failure is logged loudly but does not undo the
    /// checkpoint: the database copy stands and is published again on the next call.
    fn publish(&self, size: u64, note: &str, now: Timestamp) -> bool {
        let line = json!({ "size": size, "signed_at": now, "note": note }).to_string();
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .and_then(|mut f| {
                f.write_all(format!("{line}\n").as_bytes())
                    .and_then(|()| f.sync_data())
            });
        match res {
            Ok(()) => {
                tracing::info!(size, file = %self.log_path.display(), "audit checkpoint published");
                true
            }
            Err(e) => {
                tracing::error!(size, file = %self.log_path.display(), error = %e, "could not publish the audit checkpoint; will retry");
                false
            }
        }
    }
}
