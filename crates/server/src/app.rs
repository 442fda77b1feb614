//! The one application state: a few per-domain services and what they share. The API, the
//! console and the workers all go through these services; none touches the store for a decision
//! of its own.

use std::path::PathBuf;
use std::sync::Arc;

use breakglass_core::{Actor, Clock, EventDraft, EventKind, GrantId};
use breakglass_providers::TokenProvider;
use breakglass_store::{Store, StoredCheckpoint};

use crate::alert::Alerting;
use crate::audit::checkpoint::Checkpointer;
use crate::error::ServiceError;
use crate::grant::{Grants, GrantsParts, Providers};
use crate::metrics::Metrics;
use crate::policy::{Access, Catalog, Policies};
use crate::signin::certificate::CertMap;
use crate::signin::{AuthSettings, Caller, SignIn};
use crate::startup::datadir::DataDir;
use crate::workers::wake::Alarms;

/// Everything a request or a worker needs.
pub struct App {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// The roles and policies in force.
    pub catalog: Arc<Catalog>,
    /// Who may do what: scopes, policy and step-up.
    pub access: Arc<Access>,
    pub grants: Grants,
    pub signin: SignIn,
    /// The alert channels and their rules.
    pub alerts: Arc<Alerting>,
    /// Signs audit checkpoints and publishes them outside the database.
    pub checkpoints: Arc<Checkpointer>,
    /// This process's counters, scraped at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The token provider's keys, for the key set and introspection.
    pub tokens: Arc<TokenProvider>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The config file (`serve --config`), read again on SIGHUP.
    pub config_file: Option<PathBuf>,
    /// Which client certificates stand for which service principal (`[client_certs]`).
    pub client_certs: Arc<CertMap>,
    /// Whether client certificates are asked for (`serve --client-ca`).
    pub client_ca: bool,
    /// Wakes the workers that sleep until their next due item (the reaper, the alert dispatcher).
    pub alarms: Arc<Alarms>,
    /// Held for the life of the process (the data directory's lock).
    data: DataDir,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("store", &self.data.location.describe())
            .field("roles_dir", &self.catalog.roles_dir())
            .finish_non_exhaustive()
    }
}

/// How an application is put together, besides its data directory and clock.
pub struct Settings<'a> {
    /// The `iss` of issued tokens.
    pub issuer: &'a str,
    /// Where signed checkpoints are published.
    pub checkpoint_log: PathBuf,
    /// How long a refused revocation is retried before the grant is marked `failed`.
    pub revoke_give_up: std::time::Duration,
    pub alerting: Arc<Alerting>,
    pub auth: AuthSettings,
    /// The roles in force at start, and the directory they are reloaded from.
    pub roles: breakglass_core::RoleSet,
    pub roles_dir: PathBuf,
    /// The policies in force at start, and where custom `*.cedar` policies are read on reload.
    pub policies: Policies,
    pub policies_dir: Option<PathBuf>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The config file the alert rules came from, if any.
    pub config_file: Option<PathBuf>,
    /// `[client_certs]` as loaded at start, and whether a client CA is configured.
    pub client_certs: crate::signin::certificate::ClientCerts,
    pub client_ca: bool,
}

impl App {
    pub fn new(data: DataDir, clock: Arc<dyn Clock>, s: Settings<'_>) -> Self {
        let store = Arc::clone(&data.store);
        let tokens = Arc::new(data.token_provider(s.issuer));
        let checkpoints = Arc::new(Checkpointer::new(
            data.audit_signer.clone(),
            s.checkpoint_log,
        ));
        let catalog = Arc::new(Catalog::new(
            s.roles,
            s.policies,
            s.roles_dir,
            s.policies_dir,
        ));
        let access = Arc::new(Access::new(
            Arc::clone(&catalog),
            Arc::clone(&clock),
            s.auth.step_up_window,
        ));
        let metrics = Arc::new(Metrics::new(&s.alerting.channel_names()));
        let alarms = Arc::new(Alarms::default());
        let grants = Grants::new(GrantsParts {
            store: Arc::clone(&store),
            clock: Arc::clone(&clock),
            catalog: Arc::clone(&catalog),
            access: Arc::clone(&access),
            providers: Providers::new(Arc::clone(&tokens)),
            sealer: Arc::clone(&data.sealer),
            checkpoints: Arc::clone(&checkpoints),
            metrics: Arc::clone(&metrics),
            revoke_give_up: s.revoke_give_up,
            alarms: Arc::clone(&alarms),
            alerting: Arc::clone(&s.alerting),
        });
        let signin = SignIn::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            Arc::clone(&data.sealer),
            Arc::clone(&access),
            s.auth,
        );
        Self {
            store,
            clock,
            catalog,
            access,
            grants,
            signin,
            alerts: s.alerting,
            checkpoints,
            metrics,
            tokens,
            trusted_proxies: s.trusted_proxies,
            config_file: s.config_file,
            client_certs: Arc::new(CertMap::new(s.client_certs)),
            client_ca: s.client_ca,
            alarms,
            data,
        }
    }

    /// The latest signed checkpoint, signing one first if the log grew.
    pub async fn checkpoint(&self) -> Result<StoredCheckpoint, ServiceError> {
        self.checkpoints
            .latest(self.store.as_ref(), self.clock.now())
            .await
    }

    /// Records that an authenticated caller was refused (`auth.denied`). Failing to record it is
    /// logged; the caller is refused either way.
    pub async fn record_denial(
        &self,
        caller: &Caller,
        grant: Option<GrantId>,
        code: &str,
        message: &str,
    ) {
        let action = caller.action.audit_name();
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

    /// Closes the store once everything using it is done.
    pub async fn close(&self) {
        self.data.store.close().await;
    }
}
