//! The roles and the authorization policies in force. They are built together (the policies are
//! generated from the role files plus the custom `*.cedar` files), replaced together on reload,
//! and each change is recorded in the audit log (`role.changed`, `policy.changed`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use breakglass_core::{Actor, EventDraft, EventKind, RoleSet, Timestamp};
use breakglass_store::{Store, StoreError};

use super::{Policies, PolicyError, RoleFacts};

/// The roles and policies in force, read often and replaced whole.
#[derive(Debug)]
pub struct Catalog {
    roles: RwLock<Arc<RoleSet>>,
    policies: RwLock<Arc<Policies>>,
    roles_dir: PathBuf,
    /// Where custom `*.cedar` policies are read from on reload.
    policies_dir: Option<PathBuf>,
}

impl Catalog {
    pub fn new(
        roles: RoleSet,
        policies: Policies,
        roles_dir: PathBuf,
        policies_dir: Option<PathBuf>,
    ) -> Self {
        Self {
            roles: RwLock::new(Arc::new(roles)),
            policies: RwLock::new(Arc::new(policies)),
            roles_dir,
            policies_dir,
        }
    }

    /// The roles in force now.
    pub fn roles(&self) -> Arc<RoleSet> {
        match self.roles.read() {
            Ok(r) => Arc::clone(&r),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The policies in force now.
    pub fn policies(&self) -> Arc<Policies> {
        match self.policies.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Puts a newly loaded pair in force.
    pub fn replace(&self, roles: RoleSet, policies: Policies) {
        match self.roles.write() {
            Ok(mut r) => *r = Arc::new(roles),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(roles),
        }
        match self.policies.write() {
            Ok(mut p) => *p = Arc::new(policies),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(policies),
        }
    }

    pub fn roles_dir(&self) -> &Path {
        &self.roles_dir
    }

    pub fn policies_dir(&self) -> Option<&Path> {
        self.policies_dir.as_deref()
    }
}

/// The policies for `roles` plus every `*.cedar` in `dir`.
pub fn build(roles: &RoleSet, dir: Option<&Path>) -> Result<Policies, PolicyError> {
    Policies::build(facts(roles), dir)
}

/// As [`build`], with the custom files given by name and content: what the fuzzer feeds.
pub(crate) fn build_from(
    roles: &RoleSet,
    files: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> Result<Policies, PolicyError> {
    Policies::build_from(facts(roles), files)
}

fn facts(roles: &RoleSet) -> impl Iterator<Item = RoleFacts<'_>> {
    roles.iter().map(|role| RoleFacts {
        role,
        emergency_allowed: role.emergency.is_some(),
    })
}

/// Records the effective policy's hash; a change is a `policy.changed` event.
pub async fn record(
    store: &dyn Store,
    policies: &Policies,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let old = store
        .setting("policy")
        .await?
        .and_then(|b| String::from_utf8(b).ok());
    if old.as_deref() == Some(policies.hash()) {
        return Ok(false);
    }
    let event = EventDraft::new(
        Actor::System("policy"),
        None,
        EventKind::PolicyChanged {
            old_hash: old,
            new_hash: policies.hash().to_owned(),
            files: policies
                .files()
                .iter()
                .map(|(f, h)| format!("{f} sha256:{h}"))
                .collect(),
        },
    );
    store
        .record_setting("policy", policies.hash().as_bytes(), &[event], now)
        .await
}
