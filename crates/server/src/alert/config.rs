//! The config file's alert sections (`[alerts]`, `[channels.NAME]`): reading and checking them,
//! checking that every role names only configured channels, and recording a changed file in the
//! audit log (`config.changed`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use breakglass_core::text::toml_reason;
use breakglass_core::{Actor, Duration, EventDraft, EventKind, Name, RoleSet, Timestamp};
use breakglass_notify::ChannelConfig;
use serde::Deserialize;

use super::MAX_CHANNEL_TIMEOUT_MS;
use crate::StartupError;

/// The config file (`serve --config PATH`). Everything in it is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub alerts: AlertsSection,
    #[serde(default)]
    pub channels: BTreeMap<Name, ChannelConfig>,
    /// Client certificate subjects (CN) that stand for service principals over mutual TLS;
    /// read by `signin::certificate`, not by alerting.
    #[serde(default)]
    pub client_certs: BTreeMap<String, crate::signin::certificate::ClientCertEntry>,
}

/// `[alerts]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSection {
    /// Channels told of every high-severity event (activations, failures, orphans, failed
    /// alerts) and every role change, whatever the role says.
    #[serde(default)]
    pub always: Vec<Name>,
    /// Warn the holder this long before a grant ends (`grant.expiring_soon`); off if unset.
    #[serde(default)]
    pub expiring_soon: Option<Duration>,
    /// Attempts per delivery before it is given up (default 8).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// The broker's public URL, for links to grants in alerts.
    #[serde(default)]
    pub link: Option<String>,
    /// Channels every signed audit checkpoint is published to (webhook or syslog, typically a
    /// place the database's owner cannot rewrite), besides the checkpoint log file.
    #[serde(default)]
    pub checkpoints: Vec<Name>,
}

pub(super) const DEFAULT_MAX_ATTEMPTS: u32 = 8;
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

impl FileConfig {
    /// Reads and validates the config file. Errors name the file and the key. Also returns the
    /// SHA-256 of its bytes (hex), which `config.changed` events record.
    pub fn load(path: &Path) -> Result<(Self, String), StartupError> {
        let bad = |message: String| StartupError::Config {
            path: path.to_owned(),
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(bad(format!("it is larger than {MAX_CONFIG_BYTES} bytes")));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let hash = {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(text.as_bytes()))
        };
        Ok((Self::parse(&text, path)?, hash))
    }

    /// Parses and validates the text of the config file at `path` (which names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, StartupError> {
        let bad = |message: String| StartupError::Config {
            path: path.to_owned(),
            message,
        };
        let cfg: Self = toml::from_str(text).map_err(|e| bad(toml_reason(text, &e)))?;
        for (key, names) in [
            ("alerts.always", &cfg.alerts.always),
            ("alerts.checkpoints", &cfg.alerts.checkpoints),
        ] {
            for name in names {
                if !cfg.channels.contains_key(name) {
                    return Err(bad(format!(
                        "key `{key}` names channel `{name}`, which has no `[channels.{name}]`"
                    )));
                }
            }
        }
        for (name, c) in &cfg.channels {
            let timeout = match c {
                ChannelConfig::Webhook(w) => w.timeout,
                ChannelConfig::Smtp(m) => Some(m.timeout),
                ChannelConfig::Syslog(s) => Some(s.timeout),
            };
            // A delivery's lease must outlast its attempt, or another pass would send it again
            // while it is still in flight.
            if timeout.is_some_and(|t| t.as_millis() > MAX_CHANNEL_TIMEOUT_MS) {
                return Err(bad(format!(
                    "key `channels.{name}.timeout` must be at most {}s",
                    MAX_CHANNEL_TIMEOUT_MS / 1000
                )));
            }
        }
        if let Some(n) = cfg.alerts.max_attempts
            && !(1..=100).contains(&n)
        {
            return Err(bad(format!(
                "key `alerts.max_attempts` must be between 1 and 100, not {n}"
            )));
        }
        Ok(cfg)
    }
}

/// Records the config file in force: a `config.changed` event when its hash differs from the one
/// recorded last (once, however many replicas start with it).
pub async fn record_config(
    store: &dyn breakglass_store::Store,
    path: &Path,
    hash: &str,
    now: Timestamp,
) -> Result<bool, StartupError> {
    let old = store
        .setting(CONFIG_HASH)
        .await?
        .and_then(|v| String::from_utf8(v).ok());
    if old.as_deref() == Some(hash) {
        return Ok(false);
    }
    let event = EventDraft::new(
        Actor::System("config"),
        None,
        EventKind::ConfigChanged {
            file: path.display().to_string(),
            old_hash: old,
            new_hash: hash.to_owned(),
        },
    );
    Ok(store
        .record_setting(CONFIG_HASH, hash.as_bytes(), &[event], now)
        .await?)
}

const CONFIG_HASH: &str = "config-hash";

/// Checks that every role names only configured channels.
pub fn check_role_alerts(roles: &RoleSet, channels: &BTreeSet<String>) -> Result<(), StartupError> {
    for r in roles.iter() {
        if let Some(missing) = r.alerts.iter().find(|a| !channels.contains(a.as_str())) {
            return Err(breakglass_core::DomainError::InvalidRoleFile {
                file: r.file.clone(),
                message: format!(
                    "key `alerts` names channel `{missing}`, which is not configured; add `[channels.{missing}]` to the config file (`serve --config`) or remove it"
                ),
            }
            .into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parse_error_names_line_and_column_and_never_quotes_the_file() {
        let text = "[alerts]\nalways = []\n\n[channels.x]\nkind = \"webhook\"\nhmac_key = s3cr3t-literal\n";
        let e = toml::from_str::<FileConfig>(text).unwrap_err();
        let reason = toml_reason(text, &e);
        assert!(reason.starts_with("line 6, column 12: "), "{reason}");
        assert!(!reason.contains("s3cr3t"), "{reason}");
    }
}
