//! What SIGHUP reads again: the config file (alert channels and their rules, `[client_certs]`),
//! the role files and the policies. Each part is all or nothing: a part that does not load, or that would leave a
//! role in force naming a channel nobody configures, keeps what is in force and is reported with
//! the file and the reason (the line and column too, where the parser can point at them). Both
//! parts are decided before either is put in force, so the roles in force always name only
//! channels in force. What changed is audited: `config.changed`, `role.changed`,
//! `policy.changed`.

use std::collections::BTreeSet;
use std::path::Path;

use breakglass_core::RoleSet;

use crate::alert::{self, Alerting};
use crate::app::App;
use crate::policy::{self, Policies};
use crate::signin::certificate::ClientCerts;
use crate::{StartupError, roles};

/// What one reload did to each part.
#[derive(Debug)]
pub struct Reloaded {
    /// `None` without a config file; else whether its recorded hash changed, or why it was kept.
    pub config: Option<Result<bool, StartupError>>,
    /// How many roles changed, or why the roles in force were kept.
    pub roles: Result<usize, StartupError>,
}

impl App {
    /// Re-reads the config file, the roles and the policies, and puts in force each part that
    /// loads and fits the other. The config file is taken if every role that will be in force
    /// names only channels it configures: the new roles if they fit it, else those in force.
    pub async fn reload(&self) -> Reloaded {
        let new_roles = roles::load(self.catalog.roles_dir()).and_then(|set| {
            let policies = policy::build(&set, self.catalog.policies_dir())?;
            Ok((set, policies))
        });
        let current = self.catalog.roles();
        let config = self.config_file.as_deref().map(|path| {
            let (built, certs, hash) = load_config(path)?;
            certs.check_served(self.client_ca, path)?;
            let channels = built.channel_names();
            let new_fit = matches!(&new_roles, Ok((set, _)) if misfit(set, &channels).is_none());
            if !new_fit && let Some(m) = misfit(&current, &channels) {
                return Err(dropped_channel(path, m));
            }
            Ok((path, built, certs, hash))
        });
        // The channels in force once this reload is done; the new roles must name only these.
        let channels = match &config {
            Some(Ok((_, built, _, _))) => built.channel_names(),
            _ => self.alerts.channel_names(),
        };
        let roles = new_roles.and_then(|(set, policies)| {
            alert::check_role_alerts(&set, &channels)?;
            Ok((set, policies))
        });
        let config = match config {
            None => None,
            Some(Err(e)) => Some(Err(e)),
            Some(Ok((path, built, certs, hash))) => {
                Some(self.put_config(path, built, certs, &hash).await)
            }
        };
        let roles = match roles {
            Ok((set, policies)) => self.put_roles(set, policies).await,
            Err(e) => Err(e),
        };
        Reloaded { config, roles }
    }

    /// Re-reads the roles directory and the policies against the channels in force. On any error
    /// the roles and the policies in force stay as they were.
    pub async fn reload_roles(&self) -> Result<usize, StartupError> {
        let set = roles::load(self.catalog.roles_dir())?;
        alert::check_role_alerts(&set, &self.alerts.channel_names())?;
        let policies = policy::build(&set, self.catalog.policies_dir())?;
        self.put_roles(set, policies).await
    }

    async fn put_roles(&self, set: RoleSet, policies: Policies) -> Result<usize, StartupError> {
        let changed = roles::record(self.store.as_ref(), &set, self.clock.now()).await?;
        if policy::record(self.store.as_ref(), &policies, self.clock.now()).await? {
            tracing::info!(hash = %policies.hash(), policies = policies.len(), "policy changed");
        }
        self.catalog.replace(set, policies);
        // Request time-outs follow the roles in force.
        self.alarms.reaper.ring();
        Ok(changed)
    }

    async fn put_config(
        &self,
        path: &Path,
        built: Alerting,
        certs: ClientCerts,
        hash: &str,
    ) -> Result<bool, StartupError> {
        let changed =
            alert::record_config(self.store.as_ref(), path, hash, self.clock.now()).await?;
        self.alerts.replace(built);
        self.client_certs.replace(certs);
        // Warnings before a grant's end and retries follow the rules in force.
        self.alarms.alerts.ring();
        Ok(changed)
    }
}

/// Loads the config file, builds its channels (reading their secrets now) and checks its
/// `[client_certs]`.
fn load_config(path: &Path) -> Result<(Alerting, ClientCerts, String), StartupError> {
    let (file, hash) = alert::FileConfig::load(path)?;
    let certs = ClientCerts::from_config(&file.client_certs, path)?;
    Ok((Alerting::build(&file, path)?, certs, hash))
}

/// A role in `set` that names a channel not in `channels`: (role, its file, the channel).
fn misfit(set: &RoleSet, channels: &BTreeSet<String>) -> Option<(String, String, String)> {
    set.iter().find_map(|r| {
        r.alerts
            .iter()
            .find(|a| !channels.contains(a.as_str()))
            .map(|a| (r.id.to_string(), r.file.clone(), a.to_string()))
    })
}

fn dropped_channel(path: &Path, (role, file, channel): (String, String, String)) -> StartupError {
    StartupError::Config {
        path: path.to_owned(),
        message: format!(
            "role `{role}` ({file}) names channel `{channel}` in its `alerts`, and this file no longer configures `[channels.{channel}]`; remove the channel from the role first, or keep it here"
        ),
    }
}
