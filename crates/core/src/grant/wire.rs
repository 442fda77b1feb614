//! A grant as one flat JSON object: how the store keeps it and how the API shows it. The format
//! predates the state-dependent fields moving into [`GrantState`]'s variants and stays exactly
//! what it was: `handle`, `pending_extension`, `credential_due`, `expiry_warned` and the emergency
//! fields sit beside the flattened `state`, so rows written by any earlier version still read.

use serde::{Deserialize, Serialize};

use super::{EmergencyUse, EndCause, Grant, GrantState};
use crate::{Approval, Duration, Extension, GrantId, Name, PendingExtension, Target, Timestamp};

#[derive(Serialize, Deserialize)]
pub(super) struct GrantWire {
    id: GrantId,
    role: Name,
    role_hash: String,
    requester: Name,
    reason: String,
    incident: Option<String>,
    duration: Duration,
    requested_at: Timestamp,
    target: Target,
    approvals: Vec<Approval>,
    extensions: Vec<Extension>,
    pending_extension: Option<PendingExtension>,
    handle: Option<String>,
    #[serde(default)]
    credential_due: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expiry_warned: Option<Timestamp>,
    #[serde(default)]
    emergency: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    review_due: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reviewed_at: Option<Timestamp>,
    /// Only written when set, so the JSON of every other grant stays what it was.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    drill: bool,
    #[serde(flatten)]
    state: WireState,
    updated_at: Timestamp,
}

/// The states as written: only what is not one of the flat fields above.
#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum WireState {
    Requested,
    Approved {
        approved_at: Timestamp,
    },
    Activating {
        started_at: Timestamp,
        expires_at: Timestamp,
    },
    Active {
        activated_at: Timestamp,
        expires_at: Timestamp,
    },
    Revoking {
        activated_at: Option<Timestamp>,
        expires_at: Timestamp,
        end: EndCause,
    },
    Expired {
        activated_at: Option<Timestamp>,
        expires_at: Timestamp,
        ended_at: Timestamp,
    },
    Revoked {
        activated_at: Option<Timestamp>,
        ended_at: Timestamp,
        revoked_by: String,
        revoke_reason: String,
    },
    Denied {
        denied_at: Timestamp,
        denied_by: String,
        deny_reason: String,
    },
    Cancelled {
        cancelled_at: Timestamp,
        cancelled_by: String,
    },
    TimedOut {
        timed_out_at: Timestamp,
    },
    Failed {
        failed_at: Timestamp,
        failure: String,
    },
}

/// The flat fields a state carries.
#[derive(Default)]
struct Flat {
    handle: Option<String>,
    pending_extension: Option<PendingExtension>,
    credential_due: bool,
    expiry_warned: Option<Timestamp>,
}

fn flatten(state: GrantState) -> (WireState, Flat) {
    let just = |handle| Flat {
        handle,
        ..Flat::default()
    };
    match state {
        GrantState::Requested => (WireState::Requested, Flat::default()),
        GrantState::Approved { approved_at } => {
            (WireState::Approved { approved_at }, Flat::default())
        }
        GrantState::Activating {
            started_at,
            expires_at,
            handle,
        } => (
            WireState::Activating {
                started_at,
                expires_at,
            },
            just(Some(handle)),
        ),
        GrantState::Active {
            activated_at,
            expires_at,
            handle,
            pending_extension,
            credential_due,
            expiry_warned,
        } => (
            WireState::Active {
                activated_at,
                expires_at,
            },
            Flat {
                handle: Some(handle),
                pending_extension,
                credential_due,
                expiry_warned,
            },
        ),
        GrantState::Revoking {
            activated_at,
            expires_at,
            end,
            handle,
        } => (
            WireState::Revoking {
                activated_at,
                expires_at,
                end,
            },
            just(handle),
        ),
        GrantState::Expired {
            activated_at,
            expires_at,
            ended_at,
            handle,
        } => (
            WireState::Expired {
                activated_at,
                expires_at,
                ended_at,
            },
            just(handle),
        ),
        GrantState::Revoked {
            activated_at,
            ended_at,
            revoked_by,
            revoke_reason,
            handle,
        } => (
            WireState::Revoked {
                activated_at,
                ended_at,
                revoked_by,
                revoke_reason,
            },
            just(handle),
        ),
        GrantState::Denied {
            denied_at,
            denied_by,
            deny_reason,
        } => (
            WireState::Denied {
                denied_at,
                denied_by,
                deny_reason,
            },
            Flat::default(),
        ),
        GrantState::Cancelled {
            cancelled_at,
            cancelled_by,
        } => (
            WireState::Cancelled {
                cancelled_at,
                cancelled_by,
            },
            Flat::default(),
        ),
        GrantState::TimedOut { timed_out_at } => {
            (WireState::TimedOut { timed_out_at }, Flat::default())
        }
        GrantState::Failed {
            failed_at,
            failure,
            handle,
        } => (WireState::Failed { failed_at, failure }, just(handle)),
    }
}

impl From<Grant> for GrantWire {
    fn from(g: Grant) -> Self {
        let (state, flat) = flatten(g.state);
        Self {
            id: g.id,
            role: g.role,
            role_hash: g.role_hash,
            requester: g.requester,
            reason: g.reason,
            incident: g.incident,
            duration: g.duration,
            requested_at: g.requested_at,
            target: g.target,
            approvals: g.approvals,
            extensions: g.extensions,
            pending_extension: flat.pending_extension,
            handle: flat.handle,
            credential_due: flat.credential_due,
            expiry_warned: flat.expiry_warned,
            emergency: g.emergency.is_some(),
            review_due: g.emergency.map(|e| e.review_due),
            reviewed_at: g.emergency.and_then(|e| e.reviewed_at),
            drill: g.drill,
            state,
            updated_at: g.updated_at,
        }
    }
}

impl TryFrom<GrantWire> for Grant {
    type Error = String;

    fn try_from(w: GrantWire) -> Result<Self, String> {
        let id = w.id;
        let handle = |h: Option<String>, state: &str| {
            h.ok_or_else(|| format!("grant `{id}` is `{state}` but has no handle"))
        };
        let state = match w.state {
            WireState::Requested => GrantState::Requested,
            WireState::Approved { approved_at } => GrantState::Approved { approved_at },
            WireState::Activating {
                started_at,
                expires_at,
            } => GrantState::Activating {
                started_at,
                expires_at,
                handle: handle(w.handle, "activating")?,
            },
            WireState::Active {
                activated_at,
                expires_at,
            } => GrantState::Active {
                activated_at,
                expires_at,
                handle: handle(w.handle, "active")?,
                pending_extension: w.pending_extension,
                credential_due: w.credential_due,
                expiry_warned: w.expiry_warned,
            },
            WireState::Revoking {
                activated_at,
                expires_at,
                end,
            } => GrantState::Revoking {
                activated_at,
                expires_at,
                end,
                handle: w.handle,
            },
            WireState::Expired {
                activated_at,
                expires_at,
                ended_at,
            } => GrantState::Expired {
                activated_at,
                expires_at,
                ended_at,
                handle: w.handle,
            },
            WireState::Revoked {
                activated_at,
                ended_at,
                revoked_by,
                revoke_reason,
            } => GrantState::Revoked {
                activated_at,
                ended_at,
                revoked_by,
                revoke_reason,
                handle: w.handle,
            },
            WireState::Denied {
                denied_at,
                denied_by,
                deny_reason,
            } => GrantState::Denied {
                denied_at,
                denied_by,
                deny_reason,
            },
            WireState::Cancelled {
                cancelled_at,
                cancelled_by,
            } => GrantState::Cancelled {
                cancelled_at,
                cancelled_by,
            },
            WireState::TimedOut { timed_out_at } => GrantState::TimedOut { timed_out_at },
            WireState::Failed { failed_at, failure } => GrantState::Failed {
                failed_at,
                failure,
                handle: w.handle,
            },
        };
        let emergency = match (w.emergency, w.review_due) {
            (false, _) => None,
            (true, Some(review_due)) => Some(EmergencyUse {
                review_due,
                reviewed_at: w.reviewed_at,
            }),
            (true, None) => {
                return Err(format!(
                    "grant `{id}` is an emergency grant with no review due date"
                ));
            }
        };
        Ok(Self {
            id,
            role: w.role,
            role_hash: w.role_hash,
            requester: w.requester,
            reason: w.reason,
            incident: w.incident,
            duration: w.duration,
            requested_at: w.requested_at,
            target: w.target,
            approvals: w.approvals,
            extensions: w.extensions,
            emergency,
            drill: w.drill,
            state,
            updated_at: w.updated_at,
        })
    }
}
