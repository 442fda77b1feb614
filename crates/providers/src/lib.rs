//! Providers put privilege on a target and take it away again. One module per target kind, all
//! behind [`Provider`], whose three calls are idempotent (invariant 8): calling `grant` twice with
//! the same spec yields the same privilege, `revoke` of something already gone succeeds, `check`
//! changes nothing.

pub mod postgres;
pub mod probe;
mod secret;
pub mod token;

use async_trait::async_trait;
use breakglass_core::{GrantId, Target, Timestamp};

pub use postgres::PostgresProvider;
pub use secret::Secret;
pub use token::TokenProvider;

/// What to grant: everything a provider needs, nothing it must look up.
#[derive(Clone, Debug)]
pub struct GrantSpec<'a> {
    pub grant: GrantId,
    /// The principal the privilege is for.
    pub principal: &'a str,
    pub target: &'a Target,
    pub not_before: Timestamp,
    /// The end the target itself enforces (invariant 1).
    pub expires_at: Timestamp,
}

/// What a provider issued.
#[derive(Debug)]
pub struct Issued {
    /// Shown once to the holder, never logged or stored in clear (invariant 6).
    pub credential: Secret,
    /// How to find this privilege again for `revoke` and `check`; holds no secret.
    pub handle: String,
    /// Identifies the credential without revealing it (hex SHA-256, shortened).
    pub fingerprint: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    Present,
    Absent,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("provider `{kind}` cannot serve a target of kind `{target}`")]
    WrongTarget {
        kind: &'static str,
        target: &'static str,
    },
    #[error("malformed handle `{0}`")]
    BadHandle(String),
    /// The target refused the operation; the message holds no secret.
    #[error("target error: {0}")]
    Target(String),
    /// The target could not be reached (down, timed out, DSN not set); retrying later may work.
    /// The message holds no secret.
    #[error("target unreachable: {0}")]
    Unreachable(String),
}

impl ProviderError {
    /// Whether a retry later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable(_))
    }
}

/// What a target reported doing when a privilege was revoked. Holds no secret.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevokeReport {
    /// Sessions of the privilege the target ended (PostgreSQL); `None` where the target has no
    /// sessions to end.
    pub sessions_ended: Option<u32>,
}

// INVARIANT(8): every call below is idempotent, so the broker and the reconciler may repeat any
// of them after a crash or a timeout.
#[async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug {
    fn kind(&self) -> &'static str;
    /// The handle `grant` will return for `spec`, known before anything is granted, so the
    /// activation intent can record it and a revoke never has to grant to find it.
    fn handle(&self, spec: &GrantSpec<'_>) -> String;
    async fn grant(&self, spec: &GrantSpec<'_>) -> Result<Issued, ProviderError>;
    async fn revoke(&self, handle: &str) -> Result<(), ProviderError>;
    /// Revokes as [`Provider::revoke`] does, and says what the target reported doing, for the
    /// audit log (a review's "facts from the target"). Providers with nothing to report revoke
    /// and report nothing.
    async fn revoke_reporting(&self, handle: &str) -> Result<RevokeReport, ProviderError> {
        self.revoke(handle).await?;
        Ok(RevokeReport::default())
    }
    async fn check(&self, handle: &str, now: Timestamp) -> Result<Presence, ProviderError>;
    /// The handles of every privilege this broker created at `target` that still exists there,
    /// whatever grant it was for: the reconciler drops any with no live grant behind it (an
    /// orphaned privilege). Providers that leave nothing at the target to list return nothing.
    async fn list(&self, target: &Target) -> Result<Vec<String>, ProviderError> {
        let _ = target;
        Ok(Vec::new())
    }
    /// The grant a handle was made for, if the handle names one (for reporting an orphan).
    fn grant_of(&self, handle: &str) -> Option<GrantId> {
        let _ = handle;
        None
    }
    /// A key naming the place `list` looks at: targets with the same key list the same
    /// privileges, so a sweep lists each place once.
    fn list_key(&self, target: &Target) -> String {
        target.kind().to_owned()
    }
}
