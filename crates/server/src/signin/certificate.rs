//! Mutual TLS for service principals: `[client_certs]` in the config file says which client
//! certificate subject (CN), issued by the `serve --client-ca` CA, stands for which service
//! principal and with which scopes. A request over such a connection that carries no token acts
//! as that principal with exactly those scopes; a token, when one is sent, always wins.

use std::collections::BTreeMap;
use std::path::Path;

use breakglass_core::{Action, Name, PrincipalKind, Scope};
use breakglass_store::TokenKind;
use serde::Deserialize;

use crate::StartupError;
use crate::error::{AuthError, AuthFailure, ServiceError};
use crate::signin::{Caller, SignIn};

/// One `[client_certs."CN"]` table of the config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertEntry {
    /// The service principal the certificate acts as.
    pub principal: String,
    /// What its requests may do, as for a service token (never `factors`).
    pub scopes: Vec<String>,
}

/// Who a client certificate's subject CN stands for, checked when the config file is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertIdentity {
    /// The certificate's subject common name.
    pub cn: String,
    pub principal: Name,
    pub scopes: Vec<Scope>,
}

impl CertIdentity {
    /// How the caller shows up where a token id would (`whoami`, refusals): `cert:<CN>`.
    pub fn token_id(&self) -> String {
        format!("cert:{}", self.cn)
    }
}

/// Every mapped certificate subject.
#[derive(Clone, Debug, Default)]
pub struct ClientCerts(BTreeMap<String, CertIdentity>);

impl ClientCerts {
    /// Checks `[client_certs]`: each principal a valid name, each scope one a service may hold.
    pub fn from_config(
        entries: &BTreeMap<String, ClientCertEntry>,
        path: &Path,
    ) -> Result<Self, StartupError> {
        let bad = |message: String| StartupError::Config {
            path: path.to_owned(),
            message,
        };
        let mut map = BTreeMap::new();
        for (cn, e) in entries {
            let key = format!("client_certs.\"{cn}\"");
            if cn.trim().is_empty() || cn.chars().any(char::is_control) {
                return Err(bad(format!(
                    "key `{key}` is not a certificate subject name"
                )));
            }
            let principal = e
                .principal
                .parse::<Name>()
                .map_err(|err| bad(format!("key `{key}.principal`: {err}")))?;
            if e.scopes.is_empty() {
                return Err(bad(format!(
                    "key `{key}.scopes` is empty; name what the service may do (`read`, `request`, `credential`, `approve`, `revoke`)"
                )));
            }
            let mut scopes = Vec::new();
            for s in &e.scopes {
                match Scope::parse(s) {
                    Some(scope) if scope.allowed_for_services() => scopes.push(scope),
                    _ => {
                        return Err(bad(format!(
                            "key `{key}.scopes`: `{s}` is not a scope a service may hold"
                        )));
                    }
                }
            }
            map.insert(
                cn.clone(),
                CertIdentity {
                    cn: cn.clone(),
                    principal,
                    scopes,
                },
            );
        }
        Ok(Self(map))
    }

    pub fn get(&self, cn: &str) -> Option<&CertIdentity> {
        self.0.get(cn)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Refuses a mapping that nothing could use: `[client_certs]` without a client CA.
    pub fn check_served(&self, client_ca: bool, path: &Path) -> Result<(), StartupError> {
        if !client_ca && !self.is_empty() {
            return Err(StartupError::Config {
                path: path.to_owned(),
                message:
                    "`[client_certs]` needs `serve --tls-cert FILE --tls-key FILE --client-ca FILE`"
                        .into(),
            });
        }
        Ok(())
    }
}

/// The mapping in force, replaced whole when the config file is reloaded (SIGHUP). A connection
/// is mapped when its TLS handshake completes, so one open before a reload keeps the identity it
/// had.
#[derive(Debug, Default)]
pub struct CertMap(std::sync::RwLock<std::sync::Arc<ClientCerts>>);

impl CertMap {
    pub fn new(certs: ClientCerts) -> Self {
        Self(std::sync::RwLock::new(std::sync::Arc::new(certs)))
    }

    fn current(&self) -> std::sync::Arc<ClientCerts> {
        match self.0.read() {
            Ok(c) => std::sync::Arc::clone(&c),
            Err(poisoned) => std::sync::Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn get(&self, cn: &str) -> Option<CertIdentity> {
        self.current().get(cn).cloned()
    }

    pub fn replace(&self, certs: ClientCerts) {
        let certs = std::sync::Arc::new(certs);
        match self.0.write() {
            Ok(mut c) => *c = certs,
            Err(poisoned) => *poisoned.into_inner() = certs,
        }
    }
}

impl SignIn {
    /// The caller a mapped client certificate stands for: an enabled service principal, with the
    /// mapping's scopes and never a step-up.
    pub async fn authenticate_certificate(
        &self,
        id: &CertIdentity,
        action: Action,
    ) -> Result<Caller, AuthFailure> {
        let refused = |why: &'static str| AuthError::Certificate {
            cn: id.cn.clone(),
            principal: id.principal.to_string(),
            why,
        };
        let principal = self
            .store
            .principal(id.principal.as_str())
            .await
            .map_err(ServiceError::from)?
            .ok_or_else(|| refused("does not exist"))?;
        if principal.kind != PrincipalKind::Service {
            return Err(refused("is not a service principal").into());
        }
        if principal.disabled {
            return Err(AuthError::Disabled(principal.name.to_string()).into());
        }
        Ok(Caller {
            principal,
            token_id: id.token_id(),
            token_kind: TokenKind::Api,
            scopes: Some(id.scopes.clone()),
            stepped_up_at: None,
            action,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(toml: &str) -> BTreeMap<String, ClientCertEntry> {
        #[derive(Deserialize)]
        struct F {
            client_certs: BTreeMap<String, ClientCertEntry>,
        }
        toml::from_str::<F>(toml).unwrap().client_certs
    }

    #[test]
    fn a_mapping_names_a_principal_and_service_scopes() {
        let m = ClientCerts::from_config(
            &entries(
                "[client_certs.\"rotator.example\"]\nprincipal = \"rotator\"\nscopes = [\"read\", \"request\"]\n",
            ),
            Path::new("c.toml"),
        )
        .unwrap();
        let id = m.get("rotator.example").unwrap();
        assert_eq!(id.principal.as_str(), "rotator");
        assert_eq!(id.scopes, [Scope::Read, Scope::Request]);
        assert_eq!(id.token_id(), "cert:rotator.example");
        assert!(m.get("other").is_none());
    }

    #[test]
    fn bad_mappings_are_refused_with_the_key() {
        for (toml, needle) in [
            (
                "[client_certs.a]\nprincipal = \"r\"\nscopes = [\"factors\"]\n",
                "key `client_certs.\"a\".scopes`: `factors` is not a scope a service may hold",
            ),
            (
                "[client_certs.a]\nprincipal = \"r\"\nscopes = []\n",
                "key `client_certs.\"a\".scopes` is empty",
            ),
            (
                "[client_certs.a]\nprincipal = \"no spaces\"\nscopes = [\"read\"]\n",
                "key `client_certs.\"a\".principal`",
            ),
        ] {
            let e = ClientCerts::from_config(&entries(toml), Path::new("c.toml")).unwrap_err();
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
    }
}
