//! Reloads `roles/*.toml` on SIGHUP. A bad file keeps the roles in force and is logged with the
//! file and the reason; each role that changed is a `role.changed` audit event.

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::app::App;

pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; roles reload only on restart");
            return;
        }
    };
    loop {
        tokio::select! {
            Some(()) = hup.recv() => match app.reload_roles().await {
                Ok(changed) => tracing::info!(changed, roles = app.catalog.roles().len(), "roles reloaded"),
                Err(e) => tracing::error!(error = %e, help = %e.help(), "roles reload failed; the previous roles stay in force"),
            },
            _ = shutdown.changed() => return,
        }
    }
}
