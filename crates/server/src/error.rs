//! The error every service returns, and why a presented API token was not accepted. The API turns
//! both into its one `ApiError`; neither ever carries a secret.

use breakglass_core::DomainError;
use breakglass_providers::ProviderError;
use breakglass_store::StoreError;

use crate::policy::AccessError;
use crate::startup::sealing::SealError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("store: {0}")]
    Store(StoreError),
    #[error("provider: {0}")]
    Provider(#[from] ProviderError),
    #[error("sealing: {0}")]
    Seal(#[from] SealError),
    /// Retried on concurrent changes and still lost the race.
    #[error("the grant kept changing while this request was applied")]
    Busy,
    #[error(transparent)]
    Access(#[from] AccessError),
    /// Something that should not fail did (randomness, a hashing task); logged, never shown.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Domain(d) => Self::Domain(d),
            other => Self::Store(other),
        }
    }
}

impl ServiceError {
    /// Whether this is the store's "the row changed meanwhile".
    pub(crate) fn is_conflict(&self) -> bool {
        matches!(self, Self::Store(StoreError::Conflict))
    }
}

/// Why a presented API token was not accepted. Messages never contain the token's secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no API token was presented")]
    Missing,
    #[error("the presented API token is not a breakglass token")]
    Malformed,
    #[error("API token `{0}` is not valid")]
    Unknown(String),
    #[error("API token `{0}` has expired")]
    Expired(String),
    #[error("API token `{0}` was revoked")]
    Revoked(String),
    #[error("user `{0}` is disabled")]
    Disabled(String),
    /// A client certificate mapped in `[client_certs]` whose principal cannot act.
    #[error("client certificate `{cn}` maps to `{principal}`, which {why}")]
    Certificate {
        cn: String,
        principal: String,
        why: &'static str,
    },
}

impl AuthError {
    pub fn help(&self) -> &'static str {
        match self {
            Self::Missing => {
                "pass `Authorization: Bearer <token>`; the CLI reads it from `BREAKGLASS_TOKEN`"
            }
            Self::Malformed | Self::Unknown(_) => {
                "check `BREAKGLASS_TOKEN`; an admin can create a new token with `breakglass tokens create`"
            }
            Self::Expired(_) | Self::Revoked(_) => {
                "ask an admin for a new token with `breakglass tokens create`"
            }
            Self::Disabled(_) => "ask an admin why the account was disabled",
            Self::Certificate { .. } => {
                "ask the broker's operator to map the certificate to an existing service principal (`[client_certs]` in the config file, `breakglass users add NAME --service`)"
            }
        }
    }
}

/// Either a bad token or a failure while checking one.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}
