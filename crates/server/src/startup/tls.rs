//! HTTPS: the certificate, key and client CA (PEM files) loaded into a rustls configuration with
//! the `ring` provider, swapped on SIGHUP (a pair that does not load leaves the one in force), a
//! self-signed pair for `init --self-signed-tls`, and the name a valid client certificate gives.
//!
//! Client certificates are asked for but never required: a client that presents one the client
//! CA did not issue still completes the handshake (and may still use a token). Its chain is
//! checked after the handshake, with the same webpki verifier, and only a valid one names anyone
//! (see [`Tls::client_name`]). The signature that proves the client holds the certificate's key
//! is checked during the handshake, as usual.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use breakglass_core::Timestamp;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConnection, WebPkiClientVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use tokio::sync::watch;

use crate::StartupError;
use crate::startup::config::TlsFiles;

/// The file names `init --self-signed-tls` writes into the data directory.
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";

/// How long a self-signed certificate from `init` is valid.
const SELF_SIGNED_DAYS: i64 = 365;

/// The TLS configuration in force: what new connections are served with.
#[derive(Debug)]
pub struct Tls {
    pub(crate) server: Arc<ServerConfig>,
    /// The client CA's verifier, when `--client-ca` is given.
    client: Option<Arc<dyn ClientCertVerifier>>,
}

/// Loads the certificate chain, its key and the client CA. Errors name the file and the reason.
pub fn load(files: &TlsFiles) -> Result<Tls, StartupError> {
    let chain = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| StartupError::Tls {
        path: files.key.clone(),
        reason: pem_reason(&e, "private key (PKCS#8, PKCS#1 or SEC1)"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| StartupError::Tls {
            path: files.cert.clone(),
            reason: e.to_string().to_lowercase(),
        })?;
    let client = match &files.client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path)? {
                roots.add(cert).map_err(|e| StartupError::Tls {
                    path: path.clone(),
                    reason: format!(
                        "not a usable CA certificate: {}",
                        e.to_string().to_lowercase()
                    ),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| StartupError::Tls {
                    path: path.clone(),
                    reason: e.to_string().to_lowercase(),
                })?;
            Some(verifier)
        }
        None => None,
    };
    let builder = match &client {
        Some(v) => builder.with_client_cert_verifier(Arc::new(AskClientCertificate(Arc::clone(v)))),
        None => builder.with_no_client_auth(),
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .map_err(|e| StartupError::Tls {
            path: files.key.clone(),
            reason: match e {
                rustls::Error::InconsistentKeys(_) => format!(
                    "it is not the key of the certificate in `{}`",
                    files.cert.display()
                ),
                other => format!(
                    "it cannot be used with the certificate in `{}`: {}",
                    files.cert.display(),
                    other.to_string().to_lowercase()
                ),
            },
        })?;
    // HTTP/1.1 only: its header timeout is what keeps slow clients from holding connections.
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        server: Arc::new(server),
        client,
    })
}

impl Tls {
    /// The subject common name of the client's certificate, if it presented one that the client
    /// CA issued and that is valid at `now`; `None` otherwise (the request then needs a token).
    pub(crate) fn client_name(&self, conn: &ServerConnection, now: Timestamp) -> Option<String> {
        let verifier = self.client.as_ref()?;
        let (end_entity, intermediates) = conn.peer_certificates()?.split_first()?;
        let millis = u64::try_from(now.unix_millis()).unwrap_or_default();
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_millis(millis));
        if let Err(e) = verifier.verify_client_cert(end_entity, intermediates, now) {
            tracing::info!(reason = %e.to_string().to_lowercase(), "client certificate not accepted");
            return None;
        }
        common_name(end_entity)
    }
}

/// Swaps the TLS configuration in force on every SIGHUP until `stop`. A pair that does not load
/// is logged with its file and the reason, and the configuration in force stays.
pub(crate) async fn reload_on_hangup(
    files: TlsFiles,
    current: watch::Sender<Arc<Tls>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; TLS files will not be reloaded");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            got = hup.recv() => if got.is_none() { return },
        }
        match load(&files) {
            Ok(tls) => {
                current.send_replace(Arc::new(tls));
                tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded; new connections use it");
            }
            Err(StartupError::Tls { path, reason }) => {
                tracing::warn!(file = %path.display(), %reason, "TLS files not reloaded; the certificate in force stays");
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS files not reloaded; the certificate in force stays");
            }
        }
    }
}

/// The host a self-signed certificate is made for: a DNS name or an IP address.
#[derive(Clone, Debug)]
pub struct TlsHost(rcgen::SanType);

impl std::str::FromStr for TlsHost {
    type Err = StartupError;

    fn from_str(s: &str) -> Result<Self, StartupError> {
        let bad = || {
            StartupError::Usage(format!(
                "`{}` is not a host name or an IP address",
                s.chars().take(100).collect::<String>()
            ))
        };
        match ServerName::try_from(s).map_err(|_| bad())? {
            ServerName::IpAddress(ip) => {
                Ok(Self(rcgen::SanType::IpAddress(std::net::IpAddr::from(ip))))
            }
            ServerName::DnsName(name) => rcgen::string::Ia5String::try_from(name.as_ref())
                .map(|n| Self(rcgen::SanType::DnsName(n)))
                .map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

/// What `init --self-signed-tls` wrote.
#[derive(Clone, Debug)]
pub struct SelfSigned {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// SHA-256 of the certificate (DER), as `openssl x509 -fingerprint -sha256` prints it.
    pub fingerprint: String,
}

/// Writes a new ECDSA P-256 key (`tls.key`, 0600) and a certificate for `host` signed by it
/// (`tls.crt`), valid from an hour before `now` for a year, into `dir`. Never overwrites a file.
pub fn write_self_signed(
    dir: &Path,
    host: &TlsHost,
    now: Timestamp,
) -> Result<SelfSigned, StartupError> {
    let failed = |path: &Path, reason: String| StartupError::Tls {
        path: path.to_owned(),
        reason,
    };
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    let time = |secs: i64| {
        time::OffsetDateTime::from_unix_timestamp(secs)
            .map_err(|e| failed(&cert_path, format!("bad validity time: {e}")))
    };
    let start = now.unix_seconds();
    let mut params = rcgen::CertificateParams::default();
    params.not_before = time(start.saturating_sub(3600))?;
    params.not_after = time(start.saturating_add(SELF_SIGNED_DAYS * 86_400))?;
    let name = match &host.0 {
        rcgen::SanType::DnsName(n) => n.as_str().to_owned(),
        rcgen::SanType::IpAddress(ip) => ip.to_string(),
        other => format!("{other:?}"),
    };
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.subject_alt_names = vec![host.0.clone()];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate()
        .map_err(|e| failed(&key_path, format!("cannot make a key: {e}")))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| failed(&cert_path, format!("cannot make the certificate: {e}")))?;
    let fingerprint = {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(cert.der());
        digest
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    // INVARIANT(6): the private key is written once, readable only by the broker's user.
    write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok(SelfSigned {
        cert: cert_path,
        key: key_path,
        fingerprint,
    })
}

/// Creates `path` with `mode`; refuses one that exists.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StartupError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| StartupError::Tls {
            path: path.to_owned(),
            reason: if e.kind() == std::io::ErrorKind::AlreadyExists {
                "it already exists, and is never overwritten".into()
            } else {
                e.to_string().to_lowercase()
            },
        })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| StartupError::Tls {
            path: path.to_owned(),
            reason: e.to_string().to_lowercase(),
        })
}

/// Every certificate in a PEM file; at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, StartupError> {
    let bad = |reason: String| StartupError::Tls {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(pem_reason(&e, "certificate")))?;
    if certs.is_empty() {
        return Err(bad(
            "it holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".into(),
        ));
    }
    Ok(certs)
}

fn pem_reason(e: &rustls::pki_types::pem::Error, what: &str) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::Io(io) => format!("cannot read it: {}", io.to_string().to_lowercase()),
        E::NoItemsFound => format!("it holds no PEM {what}"),
        other => format!(
            "it is not valid PEM: {}",
            format!("{other:?}").to_lowercase()
        ),
    }
}

/// The one subject common name of a certificate; `None` if it has none, or several.
fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let mut names = cert.subject().iter_common_name();
    let cn = names.next()?.as_str().ok()?.to_owned();
    names.next().is_none().then_some(cn)
}

/// Asks for a client certificate and lets the handshake go on whatever chain is presented: the
/// chain is judged after the handshake by [`Tls::client_name`], so a client with a token is
/// never refused for its certificate. The handshake signature, which proves the client holds
/// the certificate's key, is still verified here by the client CA's own verifier.
#[derive(Debug)]
struct AskClientCertificate(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for AskClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_a_dns_name_or_an_ip_address() {
        for ok in ["broker.example.com", "localhost", "127.0.0.1", "::1"] {
            assert!(ok.parse::<TlsHost>().is_ok(), "{ok}");
        }
        for bad in ["not a host", "", "https://broker", "a..b"] {
            let e = bad.parse::<TlsHost>().unwrap_err();
            assert!(
                e.to_string()
                    .ends_with("is not a host name or an IP address"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn a_self_signed_pair_loads_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let host: TlsHost = "broker.example.com".parse().unwrap();
        let now = Timestamp::from_unix_millis(1_800_000_000_000);
        let made = write_self_signed(dir.path(), &host, now).unwrap();
        assert_eq!(made.fingerprint.len(), 32 * 3 - 1);
        let files = TlsFiles {
            cert: made.cert.clone(),
            key: made.key.clone(),
            client_ca: None,
        };
        let tls = load(&files).unwrap();
        assert_eq!(tls.server.alpn_protocols, [b"http/1.1".to_vec()]);
        let again = write_self_signed(dir.path(), &host, now).unwrap_err();
        assert!(again.to_string().contains("already exists"), "{again}");
        assert_eq!(
            std::fs::read_to_string(&made.cert).unwrap(),
            std::fs::read_to_string(&files.cert).unwrap()
        );
        // The certificate names the host, once, as subject and as its only alternative name.
        let pem = std::fs::read(&made.cert).unwrap();
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
        assert_eq!(common_name(&der).as_deref(), Some("broker.example.com"));
    }
}
