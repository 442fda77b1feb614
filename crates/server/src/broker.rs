//! The broker: the one place where the core's decisions meet the store and the providers.
//! The HTTP API and the background workers both call into it; neither touches the store directly.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use breakglass_core::{
    Actor, Clock, DomainError, Duration, EventDraft, EventKind, GrantId, Name, Principal,
    PrincipalKind, RoleSet, Target,
};
use breakglass_providers::{PostgresProvider, Provider, ProviderError, TokenProvider};
use breakglass_store::{ApiToken, Store, StoreError, StoredGrant};

use crate::apitoken::{self, NewToken};
use crate::checkpoint::Checkpointer;
use crate::datadir::DataDir;
use crate::sealing::{SealError, Sealer};
use crate::{StartupError, roles};

/// The longest an API token may live.
const MAX_TOKEN_TTL_SECS: i64 = 366 * 86_400;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
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
    Access(#[from] crate::access::AccessError),
    /// Something that should not fail did (randomness, a hashing task); logged, never shown.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<StoreError> for BrokerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Domain(d) => Self::Domain(d),
            other => Self::Store(other),
        }
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
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Principal,
    pub token_id: String,
    pub token_kind: breakglass_store::TokenKind,
    /// What the token may be used for; `None` means everything the principal may do.
    pub scopes: Option<Vec<String>>,
    /// When a second factor was last verified for this token.
    pub stepped_up_at: Option<breakglass_core::Timestamp>,
}

pub struct Broker {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    roles: RwLock<Arc<RoleSet>>,
    pub(crate) tokens: Arc<TokenProvider>,
    postgres: Arc<PostgresProvider>,
    pub(crate) data: DataDir,
    roles_dir: PathBuf,
    pub(crate) checkpoints: Checkpointer,
    /// How long a refused revocation is retried before the grant is marked `failed`.
    pub(crate) revoke_give_up: std::time::Duration,
    /// This process's retry schedule for revocations a target refused: attempts so far and when
    /// to try next. Kept in memory: after a restart, or on another replica, the first retry is
    /// immediate, which is what a broker that has just come up should do anyway.
    pub(crate) revoke_retries: Mutex<HashMap<GrantId, RetryState>>,
    /// The alert channels and their rules.
    pub(crate) alerting: Arc<crate::alerting::Alerting>,
    /// This process's counters, scraped at `/metrics`.
    pub(crate) metrics: crate::metrics::Metrics,
    /// Session length and step-up window.
    pub(crate) auth: crate::signin::AuthSettings,
    /// The authorization policy in force (generated from the roles plus `policies/*.cedar`).
    pub(crate) policies: RwLock<Arc<crate::policy::Policies>>,
    policies_dir: Option<PathBuf>,
}

/// Where a grant is in its revocation retry schedule.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RetryState {
    pub(crate) attempts: u32,
    pub(crate) next_at: breakglass_core::Timestamp,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("store", &self.data.location.describe())
            .field("roles_dir", &self.roles_dir)
            .finish_non_exhaustive()
    }
}

/// How a broker runs, besides its store, clock and roles.
pub struct Settings<'a> {
    /// The `iss` of issued tokens.
    pub issuer: &'a str,
    /// Where signed checkpoints are published.
    pub checkpoint_log: PathBuf,
    /// How long a refused revocation is retried before the grant is marked `failed`.
    pub revoke_give_up: std::time::Duration,
    pub alerting: Arc<crate::alerting::Alerting>,
    pub auth: crate::signin::AuthSettings,
    /// The policies in force at start (see [`crate::policy::Policies::build`]).
    pub policies: crate::policy::Policies,
    /// Where custom `*.cedar` policies are read from on reload.
    pub policies_dir: Option<PathBuf>,
}

impl Broker {
    pub fn new(
        data: DataDir,
        clock: Arc<dyn Clock>,
        roles: RoleSet,
        roles_dir: PathBuf,
        settings: Settings<'_>,
    ) -> Self {
        let Settings {
            issuer,
            checkpoint_log,
            revoke_give_up,
            alerting,
            auth,
            policies,
            policies_dir,
        } = settings;
        let tokens = Arc::new(data.token_provider(issuer));
        let checkpoints = Checkpointer::new(data.audit_signer.clone(), checkpoint_log);
        // The marker names this installation in what it leaves at targets, so the orphan sweep
        // never touches what another installation (or anyone else) created. The token key id is
        // the same on every replica (the key is in the shared store) and differs between
        // installations.
        let postgres = Arc::new(PostgresProvider::new(&format!(
            "breakglass:{}",
            tokens.kid()
        )));
        Self {
            store: Arc::clone(&data.store),
            clock,
            roles: RwLock::new(Arc::new(roles)),
            tokens,
            postgres,
            data,
            roles_dir,
            checkpoints,
            revoke_give_up,
            revoke_retries: Mutex::new(HashMap::new()),
            metrics: crate::metrics::Metrics::new(&alerting.channel_names()),
            alerting,
            auth,
            policies: RwLock::new(Arc::new(policies)),
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

    /// Re-reads the roles directory and the policies. On any error the roles and the policies in
    /// force stay as they were.
    pub async fn reload_roles(&self) -> Result<usize, StartupError> {
        let set = roles::load(&self.roles_dir)?;
        crate::alerting::check_role_alerts(&set, &self.alerting.channel_names())?;
        let policies = crate::authz::build(&set, self.policies_dir.as_deref())?;
        let changed = roles::record(self.store.as_ref(), &set, self.clock.now()).await?;
        if crate::authz::record(self.store.as_ref(), &policies, self.clock.now()).await? {
            tracing::info!(hash = %policies.hash(), policies = policies.len(), "policy changed");
        }
        match self.roles.write() {
            Ok(mut r) => *r = Arc::new(set),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(set),
        }
        self.set_policies(policies);
        Ok(changed)
    }

    pub(crate) fn sealer(&self) -> &Sealer {
        &self.data.sealer
    }

    pub(crate) fn provider(&self, target: &Target) -> Arc<dyn Provider> {
        match target {
            Target::Token { .. } => self.tokens.clone(),
            Target::Postgres { .. } => self.postgres.clone(),
        }
    }

    /// Checks a presented API token and loads its principal.
    pub async fn authenticate(&self, presented: &str) -> Result<Caller, BrokerErrorOrAuth> {
        let (id, secret) = apitoken::parse(presented).ok_or(AuthError::Malformed)?;
        let record = self.store.token(id).await.map_err(BrokerError::from)?;
        let Some(record) = record.filter(|r| apitoken::matches(r, secret)) else {
            return Err(AuthError::Unknown(id.to_owned()).into());
        };
        if record.revoked_at.is_some() {
            return Err(AuthError::Revoked(id.to_owned()).into());
        }
        if self.clock.now() >= record.expires_at {
            return Err(AuthError::Expired(id.to_owned()).into());
        }
        let principal = self
            .store
            .principal(&record.principal)
            .await
            .map_err(BrokerError::from)?
            .ok_or_else(|| AuthError::Unknown(id.to_owned()))?;
        if principal.disabled {
            return Err(AuthError::Disabled(principal.name.to_string()).into());
        }
        Ok(Caller {
            principal,
            token_id: record.id,
            token_kind: record.kind,
            scopes: record.scopes,
            stepped_up_at: record.stepped_up_at,
        })
    }

    /// Records that an authenticated caller was refused (`auth.denied`). Failing to record it is
    /// logged; the caller is refused either way.
    pub async fn record_denial(
        &self,
        caller: &Caller,
        action: &str,
        grant: Option<GrantId>,
        code: &str,
        message: &str,
    ) {
        let event = EventDraft::new(
            Actor::User(caller.principal.name.clone()),
            grant,
            EventKind::AuthDenied {
                action: action.to_owned(),
                code: code.to_owned(),
                message: message.to_owned(),
            },
        );
        if let Err(e) = self.store.append(&[event], self.clock.now()).await {
            tracing::error!(error = %e, action, "could not record auth.denied");
        }
    }

    /// Adds a principal. A person gets a one-time password (returned, shown once) to change at
    /// first sign-in; a service principal signs in only with scoped tokens.
    pub async fn add_user(
        &self,
        caller: &Caller,
        name: &str,
        kind: PrincipalKind,
        groups: &[String],
    ) -> Result<(Principal, Option<breakglass_providers::Secret>), BrokerError> {
        self.administer(caller, "users add")?;
        let name: Name = name.parse()?;
        let groups = groups
            .iter()
            .map(|g| g.parse::<Name>())
            .collect::<Result<_, _>>()?;
        let now = self.clock.now();
        let p = Principal {
            name,
            kind,
            groups,
            disabled: false,
            created_at: now,
        };
        let event = EventDraft::new(
            Actor::User(caller.principal.name.clone()),
            None,
            EventKind::PrincipalCreated {
                name: p.name.to_string(),
                kind: match kind {
                    PrincipalKind::Human => "human".into(),
                    PrincipalKind::Service => "service".into(),
                },
                groups: p.groups.iter().map(ToString::to_string).collect(),
            },
        );
        self.store.create_principal(&p, &[event], now).await?;
        let initial = match kind {
            PrincipalKind::Human => Some(self.reset_password(caller, p.name.as_str()).await?),
            PrincipalKind::Service => None,
        };
        Ok((p, initial))
    }

    /// Policy says the caller administers, and they stepped up recently.
    pub(crate) fn administer(&self, caller: &Caller, what: &str) -> Result<(), BrokerError> {
        self.authorize(caller, crate::policy::Action::Administer, None, false)?;
        self.require_step_up(caller, what, None)?;
        Ok(())
    }

    pub async fn users(&self, caller: &Caller) -> Result<Vec<Principal>, BrokerError> {
        self.authorize(caller, crate::policy::Action::ReadAudit, None, false)?;
        Ok(self.store.principals().await?)
    }

    /// A token for a service principal (made by an administrator, with scopes) or for the caller
    /// themself (a person's tokens are made only by that person, so nobody can act as another).
    pub async fn create_token(
        &self,
        caller: &Caller,
        user: &str,
        ttl: Duration,
        scopes: Option<Vec<String>>,
    ) -> Result<NewToken, BrokerError> {
        if ttl.as_secs() > MAX_TOKEN_TTL_SECS {
            return Err(DomainError::InvalidField {
                field: "ttl",
                problem: "it is longer than 366 days".into(),
            }
            .into());
        }
        let p = self.principal(user).await?;
        let scopes = match (&p.kind, scopes) {
            (_, Some(s)) => Some(crate::access::parse_scopes(&s)?),
            (PrincipalKind::Service, None) => {
                return Err(crate::access::AccessError::InvalidScopes(
                    "a service token needs `scopes` (what the automation may do)".into(),
                )
                .into());
            }
            (PrincipalKind::Human, None) => None,
        };
        if p.kind == PrincipalKind::Human {
            if p.name != caller.principal.name {
                return Err(crate::access::AccessError::TokenForAnotherPerson {
                    principal: caller.principal.name.to_string(),
                    user: p.name.to_string(),
                }
                .into());
            }
            self.require_step_up(caller, "tokens create", None)?;
        } else {
            self.administer(caller, "tokens create")?;
        }
        let now = self.clock.now();
        let token = apitoken::issue(
            p.name.as_str(),
            breakglass_store::TokenKind::Api,
            scopes.clone(),
            ttl,
            now,
        )?;
        let event = EventDraft::new(
            Actor::User(caller.principal.name.clone()),
            None,
            EventKind::TokenCreated {
                token_id: token.record.id.clone(),
                principal: p.name.to_string(),
                expires_at: token.record.expires_at,
                scopes,
            },
        );
        self.store
            .create_token(&token.record, &[event], now)
            .await?;
        Ok(token)
    }

    pub async fn tokens_list(&self, caller: &Caller) -> Result<Vec<ApiToken>, BrokerError> {
        let all = self.store.tokens().await?;
        Ok(
            if self.allowed(
                &caller.principal,
                crate::policy::Action::ReadAudit,
                None,
                false,
            ) {
                all
            } else {
                all.into_iter()
                    .filter(|t| t.principal == caller.principal.name.as_str())
                    .collect()
            },
        )
    }

    /// Admins revoke any token; anyone may revoke their own.
    pub async fn revoke_token(&self, caller: &Caller, id: &str) -> Result<ApiToken, BrokerError> {
        // Someone revoking a leaked token may paste the whole token: take its id, and never echo
        // anything but a well-formed id.
        let id = apitoken::id_of(id);
        let unknown = || DomainError::UnknownToken {
            id: if apitoken::is_id(id) {
                id.to_owned()
            } else {
                "(not a token id)".to_owned()
            },
        };
        let t = self.store.token(id).await?.ok_or_else(unknown)?;
        // Anyone may end their own token at once (a leak must be containable without a second
        // factor at hand); ending someone else's is administration.
        if t.principal != caller.principal.name.as_str() {
            self.administer(caller, "tokens revoke")?;
        }
        let now = self.clock.now();
        let event = EventDraft::new(
            Actor::User(caller.principal.name.clone()),
            None,
            EventKind::TokenRevoked {
                token_id: t.id.clone(),
                principal: t.principal.clone(),
            },
        );
        if !self.store.revoke_token(id, &[event], now).await? {
            return Err(DomainError::TokenAlreadyRevoked { id: t.id }.into());
        }
        Ok(self.store.token(id).await?.ok_or_else(unknown)?)
    }

    /// The latest signed checkpoint, signing one first if the log grew.
    pub async fn checkpoint(&self) -> Result<breakglass_store::StoredCheckpoint, BrokerError> {
        self.checkpoints
            .latest(self.store.as_ref(), self.clock.now())
            .await
    }

    pub(crate) async fn load(&self, id: GrantId) -> Result<StoredGrant, BrokerError> {
        self.store.grant(id).await?.ok_or_else(|| {
            DomainError::UnknownGrant {
                grant: id.to_string(),
            }
            .into()
        })
    }
}

/// Either a bad token or a failure while checking one.
#[derive(Debug, thiserror::Error)]
pub enum BrokerErrorOrAuth {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}
