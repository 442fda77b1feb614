//! The pure core of breakglass: domain types, the grant state machine, role definitions,
//! durations, audit event types and their canonical bytes.
//!
//! Nothing in this crate does IO, reads the clock or sleeps. Every transition is a function from
//! (state, command, now, role) to (new state, events) or a [`DomainError`]; the server feeds it
//! time through a [`Clock`] and persists what it returns.

pub mod action;
pub mod attestation;
pub mod clock;
pub mod drill;
pub mod duration;
pub mod error;
pub mod event;
pub mod grant;
pub mod id;
pub mod lockdown;
pub mod principal;
pub mod review;
pub mod role;
pub mod stepup;
pub mod text;
pub mod throttle;

pub use action::{Action, PolicyAction, Scope};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use drill::{Drill, DrillId};
pub use duration::Duration;
pub use error::DomainError;
pub use event::{Actor, AuditEvent, EventDraft, EventKind};
pub use grant::{
    Approval, CredentialFacts, EmergencyUse, EndCause, Extension, Grant, GrantState,
    PendingExtension, StateKind, Transition,
};
pub use id::{GrantId, Name, Subject};
pub use lockdown::{Lockdown, LockdownScope};
pub use principal::{ADMIN_GROUP, AUDITOR_GROUP, Principal, PrincipalKind};
pub use role::{
    Emergency, PostgresMode, Role, RoleSet, Target, is_allowed_env_name, is_allowed_pg_identifier,
};
pub use throttle::ThrottlePolicy;
