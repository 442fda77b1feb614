//! Certificates for TLS tests, made by the `openssl` command-line tool (not by the code under
//! test): CAs, server certificates for `127.0.0.1` and `localhost`, and client certificates.
//! Keys are ECDSA P-256.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Run;

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pair {
    /// `cert` as a string, for flags.
    pub fn cert_arg(&self) -> String {
        self.cert.display().to_string()
    }

    pub fn key_arg(&self) -> String {
        self.key.display().to_string()
    }

    /// The certificate's SHA-256 fingerprint as `openssl` prints it (`AB:CD:…`).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert)
    }
}

/// The SHA-256 fingerprint of a PEM certificate, as `openssl x509 -fingerprint` prints it.
pub fn fingerprint(cert: &Path) -> String {
    let r = openssl(&[
        "x509",
        "-in",
        &cert.display().to_string(),
        "-noout",
        "-fingerprint",
        "-sha256",
    ]);
    r.stdout
        .trim()
        .rsplit('=')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A certificate authority in a directory of its own.
pub struct Ca {
    dir: PathBuf,
    pub pair: Pair,
    issued: std::cell::Cell<u32>,
}

impl Ca {
    /// A new self-signed CA named `name`, kept in `dir/name/`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("ca dir: {e}"));
        let pair = Pair {
            cert: dir.join("ca.crt"),
            key: dir.join("ca.key"),
        };
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &pair.key_arg(),
            "-out",
            &pair.cert_arg(),
        ]);
        Self {
            dir,
            pair,
            issued: std::cell::Cell::new(0),
        }
    }

    /// A server certificate for `127.0.0.1` and `localhost`, subject `cn`.
    pub fn server(&self, cn: &str) -> Pair {
        self.issue(
            cn,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
    }

    /// A client certificate with subject `cn`.
    pub fn client(&self, cn: &str) -> Pair {
        self.issue(cn, "extendedKeyUsage=clientAuth\n")
    }

    fn issue(&self, cn: &str, extensions: &str) -> Pair {
        let n = self.issued.get() + 1;
        self.issued.set(n);
        let base = self.dir.join(format!("{n}"));
        let pair = Pair {
            cert: base.with_extension("crt"),
            key: base.with_extension("key"),
        };
        let csr = base.with_extension("csr");
        let ext = base.with_extension("ext");
        std::fs::write(
            &ext,
            format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}"),
        )
        .unwrap_or_else(|e| panic!("ext file: {e}"));
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &pair.key_arg(),
            "-out",
            &csr.display().to_string(),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr.display().to_string(),
            "-CA",
            &self.pair.cert_arg(),
            "-CAkey",
            &self.pair.key_arg(),
            "-set_serial",
            &format!("{}", 1000 + n),
            "-days",
            "2",
            "-extfile",
            &ext.display().to_string(),
            "-out",
            &pair.cert_arg(),
        ]);
        pair
    }
}

/// Runs `openssl` and expects success.
fn openssl(args: &[&str]) -> Run {
    let r = Run::of(Command::new("openssl").args(args));
    assert_eq!(r.code, 0, "openssl {args:?} failed: {r:#?}");
    r
}
