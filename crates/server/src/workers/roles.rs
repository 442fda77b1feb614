//! Reloads the config file, `roles/*.toml` and the policies on SIGHUP (see `reload.rs`). A part
//! that does not load keeps what is in force and is logged with the file and the reason; what
//! changed is audited (`config.changed`, `role.changed`, `policy.changed`).

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::app::App;

pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; the config file and roles reload only on restart");
            return;
        }
    };
    loop {
        tokio::select! {
            Some(()) = hup.recv() => {
                let done = app.reload().await;
                match done.config {
                    None => {}
                    Some(Ok(changed)) => tracing::info!(changed, channels = app.alerts.channel_names().len(), "config file reloaded"),
                    Some(Err(e)) => tracing::error!(error = %e, help = %e.help(), "config file reload failed; the previous config stays in force"),
                }
                match done.roles {
                    Ok(changed) => tracing::info!(changed, roles = app.catalog.roles().len(), "roles reloaded"),
                    Err(e) => tracing::error!(error = %e, help = %e.help(), "roles reload failed; the previous roles stay in force"),
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}
