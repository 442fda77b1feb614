//! Loading role files from `roles/*.toml` and recording what changed in the audit log.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use breakglass_core::{Actor, EventDraft, EventKind, RoleSet, Timestamp};
use breakglass_store::{RoleRecord, Store};

use crate::StartupError;

/// Largest role file accepted; anything bigger is a mistake.
const MAX_ROLE_FILE_BYTES: u64 = 256 * 1024;

/// Reads and validates every `*.toml` in `dir`, in name order. A missing directory is an empty set.
pub fn load(dir: &Path) -> Result<RoleSet, StartupError> {
    let mut files = Vec::new();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(|e| StartupError::RolesDir {
                    path: dir.to_owned(),
                    reason: e.to_string(),
                })?;
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                    continue;
                }
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                if size > MAX_ROLE_FILE_BYTES {
                    return Err(breakglass_core::DomainError::InvalidRoleFile {
                        file: path.display().to_string(),
                        message: format!("it is larger than {MAX_ROLE_FILE_BYTES} bytes"),
                    }
                    .into());
                }
                let text = fs::read_to_string(&path).map_err(|e| StartupError::RolesDir {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                files.push((path.display().to_string(), text));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(StartupError::RolesDir {
                path: dir.to_owned(),
                reason: e.to_string(),
            });
        }
    }
    files.sort();
    Ok(RoleSet::parse(
        files.iter().map(|(f, t)| (f.as_str(), t.as_str())),
    )?)
}

/// Compares `roles` with what the store last recorded and writes one `role.changed` event per role
/// added, changed or removed, with the old and new hash. Returns how many changed.
pub async fn record(
    store: &dyn Store,
    roles: &RoleSet,
    now: Timestamp,
) -> Result<usize, StartupError> {
    // When each content came into force, for owner attestation (a changed file starts again).
    let in_force: Vec<(String, String)> = roles
        .iter()
        .map(|r| (r.id.to_string(), r.hash.clone()))
        .collect();
    store.roles_in_force(&in_force, now).await?;
    // Another replica may record the same change between our read and our write; the store then
    // writes nothing and we work the changes out again from what it recorded.
    for _ in 0..8 {
        let previous = store.roles().await?;
        let (current, events) = changes(&previous, roles);
        if events.is_empty() {
            return Ok(0);
        }
        if store
            .record_roles(&previous, &current, &events, now)
            .await?
        {
            return Ok(events.len());
        }
    }
    Err(StartupError::Store(breakglass_store::StoreError::Conflict))
}

/// The records for `roles` and one `role.changed` event per difference from `previous`.
fn changes(previous: &[RoleRecord], roles: &RoleSet) -> (Vec<RoleRecord>, Vec<EventDraft>) {
    let before: BTreeMap<String, RoleRecord> =
        previous.iter().map(|r| (r.id.clone(), r.clone())).collect();
    let current: Vec<RoleRecord> = roles
        .iter()
        .map(|r| RoleRecord {
            id: r.id.to_string(),
            hash: r.hash.clone(),
            file: r.file.clone(),
        })
        .collect();
    let actor = Actor::System("roles");
    let mut events = Vec::new();
    for r in &current {
        let old = before.get(&r.id).map(|b| b.hash.clone());
        if old.as_deref() != Some(r.hash.as_str()) {
            events.push(EventDraft::new(
                actor.clone(),
                None,
                EventKind::RoleChanged {
                    role: r.id.clone(),
                    file: Some(r.file.clone()),
                    old_hash: old,
                    new_hash: Some(r.hash.clone()),
                },
            ));
        }
    }
    for (id, b) in &before {
        if !current.iter().any(|r| &r.id == id) {
            events.push(EventDraft::new(
                actor.clone(),
                None,
                EventKind::RoleChanged {
                    role: id.clone(),
                    file: None,
                    old_hash: Some(b.hash.clone()),
                    new_hash: None,
                },
            ));
        }
    }
    (current, events)
}
