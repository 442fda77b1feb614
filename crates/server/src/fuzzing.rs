//! Entry points shared by the `fuzz/` targets and by the test that replays their corpora
//! (`tests/fuzz_corpus.rs`), so CI exercises every saved input on stable Rust. Each takes any
//! bytes and must return normally: a panic, an abort or a hang is a bug.
//!
//! - [`roles`]: role files, as `roles/*.toml` are loaded at start and on reload.
//! - [`config`]: the config file (`serve --config`), as it is loaded at start and on reload.
//! - [`policy`]: one custom `policies/*.cedar` file, as policies are loaded at start, on reload
//!   and by `policy check`.
//! - [`api`]: every request body of the API. The first byte picks the body, the rest is sent:
//!   `RequestBody` (`POST /v1/grants`), `ApproveBody` (`…/approve`), `ReasonBody` (`…/deny`,
//!   `…/revoke`), `ExtendBody` (`…/extend`), `EmptyBody` (`…/cancel`), `AddUser`
//!   (`POST /v1/users`), `CreateToken` (`POST /v1/tokens`), `LoginBody` (`POST /v1/login`),
//!   `CodeBody` (`/v1/step-up`, `/v1/totp/confirm`), `PasswordBody` (`/v1/password`),
//!   `IntrospectForm` (`/v1/introspect`, a form), `RecordBody` (`POST /v1/grants/{id}/review`),
//!   `AttestBody` (`POST /v1/roles/{id}/attest`), `StartBody` (`POST /v1/drills`), `EngageBody`
//!   (`POST /v1/lockdown`) and `LiftBody` (`POST /v1/lockdown/lift`). Query strings are not
//!   bodies and are not fuzzed here.
//!
//! What needs a database, the network or a secret from the environment is left out: storing,
//! signing in against stored hashes, and building alert channels (which reads their secrets).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::LazyLock;

use breakglass_core::{Principal, PrincipalKind, RoleSet, Timestamp};

use crate::alert::{FileConfig, check_role_alerts};
use crate::policy::{self, PolicyAction, Query};
use crate::signin::certificate::ClientCerts;

/// Parses up to three role files (the input split at NUL bytes, so ids can collide across
/// files), then, if they load, checks them against a config that configures channel `ops`,
/// generates and validates their policies, and asks who may request and approve each role.
pub fn roles(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files: Vec<(String, &str)> = text
        .split('\0')
        .take(3)
        .enumerate()
        .map(|(i, t)| (format!("roles/{i}.toml"), t))
        .collect();
    let Ok(set) = RoleSet::parse(files.iter().map(|(f, t)| (f.as_str(), *t))) else {
        return;
    };
    let _ = check_role_alerts(&set, &BTreeSet::from(["ops".to_owned()]));
    let _ = set.shortest_request_ttl();
    let Ok(policies) = policy::build(&set, None) else {
        return;
    };
    let _ = policies.generated();
    let Some(alice) = person("alice", "sre") else {
        return;
    };
    for role in set.iter() {
        for action in [PolicyAction::Request, PolicyAction::Approve] {
            let _ = policies.explain(&Query {
                principal: &alice,
                action,
                role: Some(role.id.as_str()),
                own: false,
            });
        }
    }
}

/// Parses and checks a config file's text, its `[client_certs]`, and whether the fixed role
/// (which names channel `ops`) fits the channels it configures.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("config.toml");
    let Ok(file) = FileConfig::parse(text, path) else {
        return;
    };
    if let Ok(certs) = ClientCerts::from_config(&file.client_certs, path) {
        let _ = certs.check_served(false, path);
        for cn in file.client_certs.keys() {
            let _ = certs.get(cn).map(|id| id.token_id());
        }
    }
    let channels: BTreeSet<String> = file.channels.keys().map(ToString::to_string).collect();
    if let Some(roles) = fixed_roles() {
        let _ = check_role_alerts(roles, &channels);
    }
}

/// Loads the input as the one custom policy file next to the fixed role's policies, then, if it
/// loads, explains every action on that role for a requester and an approver.
pub fn policy(data: &[u8]) {
    let Some(roles) = fixed_roles() else {
        return;
    };
    let loaded = policy::build_from(roles, [("fuzz.cedar".to_owned(), data.to_vec())]);
    let policies = match loaded {
        Ok(p) => p,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    for who in [person("alice", "sre"), person("bob", "leads")]
        .iter()
        .flatten()
    {
        for action in PolicyAction::ALL {
            let _ = policies.explain(&Query {
                principal: who,
                action,
                role: action.is_about_a_role().then_some("db"),
                own: who.name.as_str() == "alice",
            });
        }
    }
}

/// Sends the input as a request body; see the module docs for which.
pub fn api(data: &[u8]) {
    crate::api::fuzz::body(data);
}

/// Role `db`: requested by `group:sre`, approved by one of `group:leads`, emergency use allowed,
/// an incident required, alerts to channel `ops`.
const ROLE: &str = r#"
id = "db"
title = "Database"
owner = "group:dba"
requesters = ["group:sre"]
default_duration = "30m"
max_duration = "2h"
max_extensions = 2
alerts = ["ops"]
[approval]
quorum = 1
approvers = ["group:leads"]
[approval.emergency]
allowed = true
max_duration = "15m"
review_within = "1d"
[request]
require_incident = true
incident_pattern = "^INC-[0-9]+$"
[target]
kind = "token"
audience = "db"
scope = ["admin"]
"#;

static ROLES: LazyLock<Option<RoleSet>> =
    LazyLock::new(|| RoleSet::parse([("roles/db.toml", ROLE)]).ok());

/// The fixed roles inputs are checked against: [`ROLE`].
pub(crate) fn fixed_roles() -> Option<&'static RoleSet> {
    ROLES.as_ref()
}

/// A person in one group, created at the fixed time [`NOW`].
pub(crate) fn person(name: &str, group: &str) -> Option<Principal> {
    Some(Principal {
        name: name.parse().ok()?,
        kind: PrincipalKind::Human,
        groups: BTreeSet::from([group.parse().ok()?]),
        disabled: false,
        created_at: NOW,
    })
}

/// The time inputs are checked at.
pub(crate) const NOW: Timestamp = Timestamp::from_unix_millis(1_700_000_000_000);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_role_loads_and_names_channel_ops() {
        let roles = fixed_roles().unwrap();
        assert!(check_role_alerts(roles, &BTreeSet::new()).is_err());
        assert!(check_role_alerts(roles, &BTreeSet::from(["ops".to_owned()])).is_ok());
    }
}
