//! The breakglass server, in rooms by domain noun: `grant` (commands and the activate/revoke
//! lifecycle), `signin` (passwords, TOTP, sessions, API tokens, throttling, accounts), `policy`
//! (Cedar, scopes, step-up: who may do what), `alert` (routing and rendering), `audit`
//! (checkpoints, offline verify), `governance` (reviews, attestations, drills, lockdown),
//! `startup` (configuration, the data directory, sealing, role files), `workers` (one file per
//! background worker, owning its loop and its logic) and `api` (thin JSON handlers). One [`App`]
//! holds the per-domain services.

pub mod alert;
pub mod api;
pub mod app;
pub mod audit;
mod backoff;
pub mod error;
pub mod fuzzing;
pub mod governance;
pub mod grant;
pub mod metrics;
pub mod policy;
mod reload;
pub mod signin;
pub mod startup;
pub mod workers;

pub use app::App;
pub use audit::verify;
pub use startup::{StartupError, config, datadir, roles};

use std::os::unix::fs::DirBuilderExt as _;
use std::sync::Arc;

use breakglass_core::Clock;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::ServeConfig;

/// A broker bound to its address, ready to run.
pub struct Server {
    app: Arc<App>,
    listener: TcpListener,
    config: ServeConfig,
    /// The TLS configuration loaded at start, if the broker serves HTTPS.
    tls: Option<startup::tls::Tls>,
}

impl Server {
    /// Opens the data directory, loads the roles, reconciles open intents and binds the listener.
    /// Any failure here is fatal and says what to do.
    pub async fn start(config: ServeConfig, clock: Arc<dyn Clock>) -> Result<Self, StartupError> {
        // Before anything is created or opened: plain HTTP off loopback, and TLS files that do
        // not load, stop the start here.
        let tls = config.check()?;
        if matches!(config.location, datadir::Location::Postgres { .. }) {
            // The local directory holds only the roles and the published checkpoint log here.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&config.data_dir)
                .map_err(|e| StartupError::DataDirNotWritable {
                    path: config.data_dir.clone(),
                    reason: e.to_string().to_lowercase(),
                })?;
        }
        let data = datadir::DataDir::open(&config.location, clock.as_ref()).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| StartupError::Bind {
                addr: config.listen.to_string(),
                reason: e.to_string().to_lowercase(),
            })?;
        let addr = listener.local_addr().map_err(|e| StartupError::Bind {
            addr: config.listen.to_string(),
            reason: e.to_string().to_lowercase(),
        })?;
        let issuer = config
            .issuer
            .clone()
            .unwrap_or_else(|| format!("{}://{addr}", config.scheme()));
        let mut client_certs = signin::certificate::ClientCerts::default();
        let alerting = match &config.config_file {
            Some(path) => {
                let (file, hash) = alert::FileConfig::load(path)?;
                let built = alert::Alerting::build(&file, path)?;
                client_certs =
                    signin::certificate::ClientCerts::from_config(&file.client_certs, path)?;
                if tls.is_some()
                    && let Some(link) = file.alerts.link.as_deref()
                    && link.starts_with("http://")
                {
                    tracing::warn!(%link, "`alerts.link` says http:// but the broker serves HTTPS");
                }
                if alert::record_config(data.store.as_ref(), path, &hash, clock.now()).await? {
                    tracing::info!(file = %path.display(), hash = %hash, "config file changed since last recorded");
                }
                built
            }
            None => alert::Alerting::disabled(),
        };
        let client_ca = config.tls.as_ref().and_then(|t| t.client_ca.as_ref());
        if let Some(path) = &config.config_file {
            client_certs.check_served(client_ca.is_some(), path)?;
        }
        if let Some(ca) = client_ca
            && client_certs.is_empty()
        {
            tracing::warn!(client_ca = %ca.display(), "client certificates are asked for, but `[client_certs]` in the config file maps none");
        }
        let roles_dir = config.roles_dir();
        let roles = roles::load(&roles_dir)?;
        alert::check_role_alerts(&roles, &alerting.channel_names())?;
        if roles.is_empty() {
            tracing::warn!(dir = %roles_dir.display(), "no roles loaded; add role files and send SIGHUP");
        }
        let policies_dir = config.policies_dir();
        let policies = policy::build(&roles, Some(&policies_dir))?;
        let changed = roles::record(data.store.as_ref(), &roles, clock.now()).await?;
        if policy::record(data.store.as_ref(), &policies, clock.now()).await? {
            tracing::info!(hash = %policies.hash(), dir = %policies_dir.display(), "policy changed since last recorded");
        }
        let checkpoint_log = config.checkpoint_log();
        signin::crypto::password::start_pool(config.password_workers).await;
        let app = Arc::new(App::new(
            data,
            clock,
            app::Settings {
                issuer: &issuer,
                checkpoint_log,
                revoke_give_up: config.revoke_give_up,
                alerting: Arc::new(alerting),
                auth: config.auth,
                roles,
                roles_dir: roles_dir.clone(),
                policies,
                policies_dir: Some(policies_dir),
                trusted_proxies: config.trusted_proxies.clone(),
                config_file: config.config_file.clone(),
                client_certs,
                client_ca: client_ca.is_some(),
            },
        ));
        tracing::info!(roles = app.catalog.roles().len(), changed, dir = %roles_dir.display(), "roles loaded");
        // INVARIANT(3): open intents left by a crash are finished before serving anything (on a
        // shared store, those another replica may be finishing right now are left to it, and to
        // the next pass if it does not).
        let intents = match config.location {
            datadir::Location::Dir(_) => workers::reconciler::Intents::All,
            datadir::Location::Postgres { .. } => workers::reconciler::Intents::Settled,
        };
        match workers::reconciler::pass(&app.grants, intents).await {
            Ok(n) => tracing::info!(open_intents = n, "start-up reconciliation done"),
            Err(e) => {
                tracing::warn!(error = %e, "start-up reconciliation incomplete; the reconciler will retry")
            }
        }
        // INVARIANT(1): grants whose end passed while the broker was down are expired before anything
        // is served, so no request sees them as live.
        if let Err(e) = workers::reaper::pass(&app.grants).await {
            tracing::warn!(error = %e, "start-up expiry pass incomplete; the reaper will retry");
        }
        Ok(Self {
            app,
            listener,
            config,
            tls,
        })
    }

    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub fn app(&self) -> Arc<App> {
        Arc::clone(&self.app)
    }

    /// Serves until `shutdown` resolves, with the workers running beside the API.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut workers = tokio::task::JoinSet::new();
        // The reaper and the dispatcher sleep until their next due item; another replica's
        // writes do not wake them, so they look again each reconcile interval.
        let pace = |min_gap| workers::wake::Pace {
            min_gap,
            recheck: self.config.reconcile_interval,
        };
        workers.spawn(workers::reaper::run(
            self.app(),
            pace(self.config.reaper_interval),
            stop_rx.clone(),
        ));
        workers.spawn(workers::reconciler::run(
            self.app(),
            self.config.reconcile_interval,
            stop_rx.clone(),
        ));
        workers.spawn(workers::checkpoint::run(
            self.app(),
            self.config.checkpoint_interval,
            stop_rx.clone(),
        ));
        workers.spawn(workers::alerts::run(
            self.app(),
            pace(self.config.dispatch_interval),
            stop_rx.clone(),
        ));
        workers.spawn(workers::drills::run(
            self.app(),
            pace(self.config.dispatch_interval),
            stop_rx.clone(),
        ));
        workers.spawn(workers::throttle::run(self.app(), stop_rx.clone()));
        workers.spawn(workers::roles::run(self.app(), stop_rx.clone()));
        workers.spawn(workers::attestations::run(
            self.app(),
            self.config.reconcile_interval,
            stop_rx.clone(),
        ));
        workers.spawn(workers::reviews::run(
            self.app(),
            self.config.reconcile_interval,
            stop_rx.clone(),
        ));
        let addr = self.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let tls = match (self.tls, &self.config.tls) {
            (Some(tls), Some(files)) => {
                let (tx, rx) = watch::channel(Arc::new(tls));
                workers.spawn(startup::tls::reload_on_hangup(files.clone(), tx, stop_rx));
                Some(rx)
            }
            _ => None,
        };
        let url = format!("{}://{addr}", self.config.scheme());
        let limits = self.config.limits;
        let (rate_limit, rate_burst) = limits
            .rate
            .map_or((0, 0), |r| (r.per_second.get(), r.burst.get()));
        tracing::info!(
            %addr, %url, issuer = %self.app.tokens.issuer(), store = %self.config.location.describe(),
            header_timeout_s = limits.header_timeout.as_secs(), body_timeout_s = limits.body_timeout.as_secs(),
            request_timeout_s = limits.request_timeout.as_secs(), max_connections = limits.max_connections,
            rate_limit, rate_burst, "breakglass serving"
        );
        let serving = startup::listen::Serving {
            router: api::serving_router(Arc::clone(&self.app), &limits, tls.is_some()),
            tls,
            client_certs: Arc::clone(&self.app.client_certs),
            limits,
            clock: Arc::clone(&self.app.clock),
        };
        startup::listen::serve(self.listener, serving, shutdown).await;
        let _ = stop_tx.send(true);
        while workers.join_next().await.is_some() {}
        self.app.close().await;
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
