//! The broker's side of authorization: builds the Cedar policies from the roles in force plus the
//! custom files, asks them, audits what changed, and turns a deny into a refusal that says how to
//! find out why.

use std::path::Path;
use std::sync::Arc;

use breakglass_core::{Actor, EventDraft, EventKind, Principal, RoleSet};

use crate::access::AccessError;
use crate::broker::{Broker, Caller};
use crate::policy::{Action, Policies, PolicyError, Query, RoleFacts};

/// The policies for `roles` plus every `*.cedar` in `dir`.
pub fn build(roles: &RoleSet, dir: Option<&Path>) -> Result<Policies, PolicyError> {
    Policies::build(
        roles.iter().map(|role| RoleFacts {
            role,
            emergency_allowed: role.emergency.is_some(),
        }),
        dir,
    )
}

/// Records the effective policy's hash; a change is a `policy.changed` event.
pub async fn record(
    store: &dyn breakglass_store::Store,
    policies: &Policies,
    now: breakglass_core::Timestamp,
) -> Result<bool, breakglass_store::StoreError> {
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

impl Broker {
    /// The policies in force now.
    pub fn policies(&self) -> Arc<Policies> {
        match self.policies.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub(crate) fn set_policies(&self, p: Policies) {
        match self.policies.write() {
            Ok(mut g) => *g = Arc::new(p),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(p),
        }
    }

    /// Whether policy lets `principal` do `action` (on `role`; `own` if the grant is theirs).
    pub(crate) fn allowed(
        &self,
        principal: &Principal,
        action: Action,
        role: Option<&str>,
        own: bool,
    ) -> bool {
        self.policies().is_allowed(&Query {
            principal,
            action,
            role,
            own,
        })
    }

    /// Refuses unless policy lets the caller do `action`.
    pub(crate) fn authorize(
        &self,
        caller: &Caller,
        action: Action,
        role: Option<&str>,
        own: bool,
    ) -> Result<(), AccessError> {
        if self.allowed(&caller.principal, action, role, own) {
            return Ok(());
        }
        Err(AccessError::PolicyDenied {
            principal: caller.principal.name.to_string(),
            action: action.as_str(),
            on: role.map_or_else(
                || "on this installation".to_owned(),
                |r| format!("on role `{r}`"),
            ),
        })
    }
}
