//! HTTPS against the real binary, with certificates made by the `openssl` tool and real clients
//! that check the chain: the `breakglass` CLI (`--ca-cert`), `curl --cacert` and Python's `ssl`.
//! Also: a wrong CA is refused, plain HTTP off loopback is refused with its help, SIGHUP swaps
//! the certificate (a bad pair keeps the old one), `init --self-signed-tls`, the `https://`
//! issuer, HSTS, and mutual TLS for service principals.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use breakglass_testkit::Run;
use breakglass_testkit::tls::{Ca, Pair, fingerprint};

use super::*;

/// A GET over HTTPS with Python's `ssl` (CA file, optional client certificate): the status,
/// the headers, the body and the server certificate's SHA-256 fingerprint; or `error`.
const PY_GET: &str = r#"
import hashlib, json, socket, ssl, sys
host, port, cafile, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile)
if len(sys.argv) > 6:
    ctx.load_cert_chain(sys.argv[5], sys.argv[6])
try:
    with socket.create_connection((host, port), timeout=60) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            der = s.getpeercert(binary_form=True)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
except ssl.SSLCertVerificationError as e:
    print(json.dumps({"error": "verify", "reason": e.verify_message}))
    sys.exit(0)
head, _, body = data.partition(b"\r\n\r\n")
lines = head.decode().split("\r\n")
print(json.dumps({
    "status": int(lines[0].split()[1]),
    "headers": {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])},
    "body": body.decode(),
    "fingerprint": ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest()),
}))
"#;

fn python_get(bg: &Broker, ca: &Path, path: &str, client: Option<&Pair>) -> Value {
    let addr = bg.addr();
    let mut cmd = Command::new("python3");
    cmd.args(["-c", PY_GET, "127.0.0.1"])
        .arg(addr.port().to_string())
        .arg(ca)
        .arg(path);
    if let Some(c) = client {
        cmd.arg(&c.cert).arg(&c.key);
    }
    let r = Run::of(&mut cmd);
    assert_eq!(r.code, 0, "python: {r:#?}");
    r.json()
}

/// `curl` over HTTPS: `(exit code, status, response head, body)`.
fn curl(bg: &Broker, ca: &Path, path: &str, extra: &[&str]) -> (i32, u16, String, String) {
    let r = Run::of(
        Command::new("curl")
            .args(["-sS", "--max-time", "60", "-i", "--cacert"])
            .arg(ca)
            .args(extra)
            .arg(format!("{}{path}", bg.url())),
    );
    let (head, body) = r.stdout.split_once("\r\n\r\n").unwrap_or((&r.stdout, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (r.code, status, head.to_lowercase(), body.to_owned())
}

/// A broker serving HTTPS with `pair`, its CLI trusting `ca`.
fn tls_broker(ca: &Ca, pair: &Pair, extra: &[&str]) -> Broker {
    let mut bg = Broker::init(Path::new(BIN), &[("prod-db-admin.toml", DB_ROLE)]);
    let mut args = vec![
        "--tls-cert".to_owned(),
        pair.cert_arg(),
        "--tls-key".to_owned(),
        pair.key_arg(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    bg.set_serve_args(&args.iter().map(String::as_str).collect::<Vec<_>>());
    bg.set_cli_env("BREAKGLASS_CA_CERT", &ca.pair.cert_arg());
    bg.restart();
    bg
}

#[test]
fn https_with_a_private_ca_serves_the_cli_curl_and_python_and_refuses_a_wrong_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "broker-ca");
    let wrong = Ca::new(tmp.path(), "other-ca");
    let server = ca.server("broker");
    let bg = tls_broker(&ca, &server, &[]);
    assert!(bg.url().starts_with("https://127.0.0.1:"), "{}", bg.url());

    // The CLI, trusting the CA through BREAKGLASS_CA_CERT (set by the kit) and through the flag.
    let who = bg.cli_json(&bg.admin_token, &["whoami"]);
    assert_eq!(who["name"], "admin", "{who}");
    let flag = Run::of(
        Command::new(BIN)
            .args(["whoami", "--output", "json", "--ca-cert"])
            .arg(&ca.pair.cert)
            .env("BREAKGLASS_URL", bg.url())
            .env("BREAKGLASS_TOKEN", &bg.admin_token)
            .env_remove("BREAKGLASS_CA_CERT"),
    );
    assert_eq!(flag.ok_json()["name"], "admin");

    // curl: every answer carries HSTS, an unknown path's too.
    let (code, status, head, body) = curl(&bg, &ca.pair.cert, "/healthz", &[]);
    assert_eq!((code, status), (0, 200), "{head}{body}");
    assert!(
        head.contains("strict-transport-security: max-age=31536000"),
        "{head}"
    );
    let (_, status, head, _) = curl(&bg, &ca.pair.cert, "/nope", &[]);
    assert_eq!(status, 404);
    assert!(head.contains("strict-transport-security"), "{head}");

    // Python's ssl, checking the chain and the IP address in the certificate.
    let py = python_get(&bg, &ca.pair.cert, "/healthz", None);
    assert_eq!(py["status"], 200, "{py}");
    assert_eq!(
        py["headers"]["strict-transport-security"],
        "max-age=31536000"
    );
    assert_eq!(py["fingerprint"], server.fingerprint());

    // A wrong CA is refused by every client.
    let (code, _, _, _) = curl(&bg, &wrong.pair.cert, "/healthz", &[]);
    assert_eq!(code, 60, "curl: peer certificate cannot be authenticated");
    let py = python_get(&bg, &wrong.pair.cert, "/healthz", None);
    assert_eq!(py["error"], "verify", "{py}");
    for (ca_file, help) in [
        (Some(wrong.pair.cert_arg()), "--ca-cert"),
        (None, "--ca-cert"),
    ] {
        let mut cmd = Command::new(BIN);
        cmd.arg("whoami")
            .env("BREAKGLASS_URL", bg.url())
            .env("BREAKGLASS_TOKEN", &bg.admin_token)
            .env_remove("BREAKGLASS_CA_CERT");
        if let Some(f) = &ca_file {
            cmd.args(["--ca-cert", f]);
        }
        let r = Run::of(&mut cmd);
        assert_eq!(r.code, 7, "{r:?}");
        assert!(
            r.stderr
                .contains(&format!("cannot reach the broker at `{}`", bg.url())),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains("certificate"), "{}", r.stderr);
        assert!(r.stderr.contains(help), "{}", r.stderr);
    }
    // Plain HTTP to the HTTPS port is no answer, and says what to check.
    let r = bg.cli_anonymous(&["whoami"]);
    assert_eq!(r.code, 3, "no session: {r:?}");
    let plain = Run::of(
        Command::new(BIN)
            .arg("whoami")
            .env("BREAKGLASS_URL", bg.url().replace("https://", "http://"))
            .env("BREAKGLASS_TOKEN", &bg.admin_token),
    );
    assert_eq!(plain.code, 7, "{plain:?}");
    assert!(plain.stderr.contains("`https://`"), "{}", plain.stderr);
    // A `--ca-cert` that is not a certificate is a usage error.
    let r = Run::of(
        Command::new(BIN)
            .args(["whoami", "--ca-cert"])
            .arg(&server.key)
            .env("BREAKGLASS_URL", bg.url())
            .env("BREAKGLASS_TOKEN", &bg.admin_token),
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("holds no PEM certificate"),
        "{}",
        r.stderr
    );

    // INVARIANT(6): no token in the log, which names failed handshakes.
    let logs = bg.logs();
    assert!(logs.contains("TLS handshake failed"), "{logs}");
    assert!(!logs.contains(&bg.admin_token));
}

#[test]
fn sighup_swaps_the_certificate_and_a_bad_pair_keeps_the_one_in_force() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "broker-ca");
    let first = ca.server("broker-1");
    let second = ca.server("broker-2");
    assert_ne!(first.fingerprint(), second.fingerprint());
    // The broker reads fixed paths; the operator replaces the files, then sends SIGHUP.
    let live = Pair {
        cert: tmp.path().join("live.crt"),
        key: tmp.path().join("live.key"),
    };
    let install = |p: &Pair| {
        std::fs::copy(&p.cert, &live.cert).unwrap();
        std::fs::copy(&p.key, &live.key).unwrap();
    };
    install(&first);
    let bg = tls_broker(&ca, &live, &[]);
    let seen = || python_get(&bg, &ca.pair.cert, "/healthz", None)["fingerprint"].clone();
    assert_eq!(seen(), first.fingerprint());

    // A key that is not the certificate's: logged with the file and the reason; nothing changes.
    std::fs::copy(&second.cert, &live.cert).unwrap();
    bg.signal("HUP");
    assert!(
        poll_until(DEADLINE, || bg.logs().contains("TLS files not reloaded")),
        "{}",
        bg.logs()
    );
    let line = bg
        .logs()
        .lines()
        .find(|l| l.contains("TLS files not reloaded"))
        .unwrap()
        .to_owned();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        v["fields"]["file"],
        live.key.display().to_string(),
        "{line}"
    );
    assert!(
        v["fields"]["reason"]
            .as_str()
            .unwrap()
            .contains("is not the key of the certificate"),
        "{line}"
    );
    assert_eq!(seen(), first.fingerprint(), "the old pair stays in force");

    // The new pair: new connections get the new certificate.
    install(&second);
    bg.signal("HUP");
    assert!(
        poll_until(DEADLINE, || seen() == second.fingerprint()),
        "never served the new certificate; logs:\n{}",
        bg.logs()
    );
    let (code, status, _, _) = curl(&bg, &ca.pair.cert, "/healthz", &[]);
    assert_eq!((code, status), (0, 200));
    assert_eq!(bg.cli_json(&bg.admin_token, &["whoami"])["name"], "admin");
}

/// Runs `serve` with `args` until it logs that it serves; returns the process and that line.
fn serving(args: &[&str]) -> (Child, Value) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(args)
        .env("BREAKGLASS_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["fields"]["message"] == "breakglass serving"
            {
                let _ = tx.send(v);
            }
        }
    });
    let line = rx.recv_timeout(DEADLINE).unwrap_or_else(|_| {
        let _ = child.kill();
        panic!("serve {args:?} did not start")
    });
    (child, line)
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn plain_http_off_loopback_is_refused_with_its_help_and_nothing_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let r = Run::of(Command::new(BIN).args(["serve", "--data-dir", d, "--listen", "0.0.0.0:0"]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("refusing to serve plain HTTP on `0.0.0.0:0`, which other hosts can reach"),
        "{}",
        r.stderr
    );
    for needle in [
        "help: tokens and passwords would cross the network in clear",
        "--tls-cert FILE --tls-key FILE",
        "--self-signed-tls",
        "--insecure-http",
    ] {
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
    }
    assert!(!data.exists(), "a refused start creates nothing");

    // TLS files that do not load are refused before anything is created, naming the file.
    let ca = Ca::new(tmp.path(), "ca");
    let a = ca.server("a");
    let b = ca.server("b");
    for (cert, key, needle) in [
        (
            a.cert_arg(),
            b.key_arg(),
            "is not the key of the certificate",
        ),
        (a.key_arg(), a.key_arg(), "holds no PEM certificate"),
        (a.cert_arg(), a.cert_arg(), "holds no PEM private key"),
        (
            tmp.path().join("missing.crt").display().to_string(),
            a.key_arg(),
            "cannot read it",
        ),
    ] {
        let r = Run::of(Command::new(BIN).args([
            "serve",
            "--data-dir",
            d,
            "--listen",
            "0.0.0.0:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ]));
        assert_eq!(r.code, 1, "{r:?}");
        assert!(r.stderr.contains("TLS file `"), "{}", r.stderr);
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
        assert!(r.stderr.contains("help: "), "{}", r.stderr);
        assert!(!data.exists());
    }
    // A certificate needs its key, and a client CA needs TLS.
    let r =
        Run::of(Command::new(BIN).args(["serve", "--data-dir", d, "--tls-cert", &a.cert_arg()]));
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--tls-key"), "{}", r.stderr);
    let r =
        Run::of(Command::new(BIN).args(["serve", "--data-dir", d, "--client-ca", &a.cert_arg()]));
    assert_eq!(r.code, 2, "{r:?}");
    assert!(!data.exists());

    // `--insecure-http` is the operator saying a proxy terminates TLS in front.
    let (child, line) = serving(&["--data-dir", d, "--listen", "0.0.0.0:0", "--insecure-http"]);
    assert!(
        line["fields"]["url"]
            .as_str()
            .unwrap()
            .starts_with("http://0.0.0.0:"),
        "{line}"
    );
    stop(child);
    // A `[client_certs]` mapping without a client CA stops the start.
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        "[client_certs.\"svc\"]\nprincipal = \"svc\"\nscopes = [\"read\"]\n",
    )
    .unwrap();
    let r = Run::of(Command::new(BIN).args([
        "serve",
        "--data-dir",
        d,
        "--listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains(
            "`[client_certs]` needs `serve --tls-cert FILE --tls-key FILE --client-ca FILE`"
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn init_self_signed_tls_writes_a_pair_and_serve_uses_it_only_when_told() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    // A bad host name changes nothing.
    let r = Run::of(Command::new(BIN).args([
        "init",
        "--data-dir",
        d,
        "--self-signed-tls",
        "not a host",
    ]));
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("`not a host` is not a host name or an IP address"),
        "{}",
        r.stderr
    );
    assert!(!data.exists());

    let init = Run::of(Command::new(BIN).args([
        "init",
        "--data-dir",
        d,
        "--self-signed-tls",
        "127.0.0.1",
        "--output",
        "json",
    ]))
    .ok_json();
    let cert = data.join("tls.crt");
    let key = data.join("tls.key");
    assert_eq!(init["tls"]["cert"], cert.display().to_string());
    assert_eq!(init["tls"]["key"], key.display().to_string());
    assert_eq!(
        init["tls"]["sha256_fingerprint"],
        fingerprint(&cert),
        "{init}"
    );
    assert_eq!(
        init["tls"]["serve"],
        format!(
            "breakglass serve --data-dir {d} --listen 127.0.0.1:7070 --tls-cert {} --tls-key {}",
            cert.display(),
            key.display()
        )
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the private key is the broker's alone");
    }
    let token = init["admin_token"].as_str().unwrap().to_owned();

    // Without the flags, `serve` keeps to plain HTTP on loopback, files or not.
    let (child, line) = serving(&["--data-dir", d, "--listen", "127.0.0.1:0"]);
    assert!(
        line["fields"]["url"]
            .as_str()
            .unwrap()
            .starts_with("http://"),
        "{line}"
    );
    stop(child);

    // With them, HTTPS, and the issuer says so.
    let (child, line) = serving(&[
        "--data-dir",
        d,
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let url = line["fields"]["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("https://127.0.0.1:"), "{line}");
    assert_eq!(line["fields"]["issuer"], url.as_str(), "{line}");
    let who = Run::of(
        Command::new(BIN)
            .args(["whoami", "--output", "json"])
            .env("BREAKGLASS_URL", &url)
            .env("BREAKGLASS_TOKEN", &token)
            .env("BREAKGLASS_CA_CERT", &cert),
    );
    assert_eq!(who.ok_json()["name"], "admin");
    let r = Run::of(
        Command::new("curl")
            .args(["-sS", "--max-time", "60", "--cacert"])
            .arg(&cert)
            .arg(format!("{url}/healthz")),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("\"ok\""), "{r:?}");
    stop(child);

    // The human output shows the fingerprint and the command; a second init never overwrites.
    let other = tmp.path().join("other");
    let r = Run::of(Command::new(BIN).args([
        "init",
        "--data-dir",
        other.to_str().unwrap(),
        "--self-signed-tls",
        "localhost",
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    let fp = fingerprint(&other.join("tls.crt"));
    assert!(
        r.stdout.contains(&format!("SHA-256 fingerprint: {fp}")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!(
            "breakglass serve --data-dir {} --listen 0.0.0.0:7070 --tls-cert",
            other.display()
        )),
        "{}",
        r.stdout
    );
    // A certificate for `localhost` is trusted at that name, and at no other.
    let token = r.stdout.lines().last().unwrap().to_owned();
    let (child, line) = serving(&[
        "--data-dir",
        other.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        other.join("tls.crt").to_str().unwrap(),
        "--tls-key",
        other.join("tls.key").to_str().unwrap(),
    ]);
    let url = line["fields"]["url"].as_str().unwrap().to_owned();
    let whoami = |url: &str| {
        Run::of(
            Command::new(BIN)
                .args(["whoami", "--output", "json"])
                .env("BREAKGLASS_URL", url)
                .env("BREAKGLASS_TOKEN", &token)
                .env("BREAKGLASS_CA_CERT", other.join("tls.crt")),
        )
    };
    assert_eq!(
        whoami(&url.replace("127.0.0.1", "localhost")).ok_json()["name"],
        "admin"
    );
    let r = whoami(&url);
    assert_eq!(r.code, 7, "{r:?}");
    assert!(r.stderr.contains("does not name the host"), "{}", r.stderr);
    stop(child);
    let again = Run::of(Command::new(BIN).args([
        "init",
        "--data-dir",
        d,
        "--self-signed-tls",
        "localhost",
    ]));
    assert_eq!(again.code, 6, "{again:?}");
    assert_eq!(
        fingerprint(&cert),
        init["tls"]["sha256_fingerprint"].as_str().unwrap()
    );
}

#[test]
fn a_mapped_client_certificate_acts_as_its_service_and_anything_else_gets_the_normal_401() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "broker-ca");
    let clients = Ca::new(tmp.path(), "client-ca");
    let rogue = Ca::new(tmp.path(), "rogue-ca");
    let server = ca.server("broker");
    let rotator = clients.client("rotator.test");
    let stranger = clients.client("stranger.test");
    let forged = rogue.client("rotator.test");
    let person = clients.client("alice.test");
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        r#"
[client_certs."rotator.test"]
principal = "rotator"
scopes = ["read"]

[client_certs."alice.test"]
principal = "alice"
scopes = ["read"]
"#,
    )
    .unwrap();
    let bg = tls_broker(
        &ca,
        &server,
        &[
            "--client-ca",
            &clients.pair.cert_arg(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    bg.cli_json(&bg.admin_token, &["users", "add", "rotator", "--service"]);
    bg.user("alice", &["sre"]);
    let with = |p: &Pair| {
        vec![
            "--cert".to_owned(),
            p.cert_arg(),
            "--key".to_owned(),
            p.key_arg(),
        ]
    };
    let call = |method: &str, path: &str, client: Option<&Pair>, token: Option<&str>| {
        let mut extra = client.map(with).unwrap_or_default();
        extra.extend(["-X".to_owned(), method.to_owned()]);
        if let Some(t) = token {
            extra.extend(["-H".to_owned(), format!("Authorization: Bearer {t}")]);
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let (code, status, _, body) = curl(&bg, &ca.pair.cert, path, &extra);
        assert_eq!(code, 0, "curl {path}: {body}");
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
        )
    };
    let get =
        |path: &str, client: Option<&Pair>, token: Option<&str>| call("GET", path, client, token);

    // The mapped certificate, no token: the service, with the mapping's scopes only.
    let (status, who) = get("/v1/whoami", Some(&rotator), None);
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["name"], "rotator");
    assert_eq!(who["token_id"], "cert:rotator.test");
    assert_eq!(get("/v1/roles", Some(&rotator), None).0, 200);
    let (status, e) = call("POST", "/v1/grants", Some(&rotator), None);
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (403, Some("scope_missing")),
        "{e}"
    );
    let py = python_get(&bg, &ca.pair.cert, "/v1/whoami", Some(&rotator));
    assert_eq!(py["status"], 200, "{py}");
    assert!(py["body"].as_str().unwrap().contains("\"rotator\""), "{py}");

    // Unmapped, from another CA, mapped to a person, or none at all: the normal 401.
    for (client, needle) in [
        (Some(&stranger), "no API token was presented"),
        (Some(&forged), "no API token was presented"),
        (Some(&person), "which is not a service principal"),
        (None, "no API token was presented"),
    ] {
        let (status, e) = get("/v1/whoami", client, None);
        assert_eq!(status, 401, "{e}");
        assert_eq!(e["error"]["code"], "unauthenticated");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(needle),
            "{needle}: {e}"
        );
    }
    // Tokens keep working, whatever certificate comes with them; a token always wins.
    let (status, who) = get("/v1/whoami", Some(&forged), Some(&bg.admin_token));
    assert_eq!(
        (status, who["name"].as_str()),
        (200, Some("admin")),
        "{who}"
    );
    let (status, who) = get("/v1/whoami", Some(&rotator), Some(&bg.admin_token));
    assert_eq!(
        (status, who["name"].as_str()),
        (200, Some("admin")),
        "{who}"
    );
    assert_eq!(bg.cli_json(&bg.admin_token, &["whoami"])["name"], "admin");

    // The mapping reloads with the config file on SIGHUP: stranger.test now stands for the
    // service, and rotator.test no longer does (each curl is a new connection).
    std::fs::write(
        &config,
        "[client_certs.\"stranger.test\"]\nprincipal = \"rotator\"\nscopes = [\"read\"]\n",
    )
    .unwrap();
    bg.signal("HUP");
    assert!(
        poll_until(DEADLINE, || get("/v1/whoami", Some(&stranger), None).0
            == 200),
        "{}",
        bg.logs()
    );
    let (status, e) = get("/v1/whoami", Some(&rotator), None);
    assert_eq!(status, 401, "{e}");
    // A mapping that names a scope no service may hold is refused and the one in force stays.
    std::fs::write(
        &config,
        "[client_certs.\"rotator.test\"]\nprincipal = \"rotator\"\nscopes = [\"factors\"]\n",
    )
    .unwrap();
    bg.signal("HUP");
    assert!(
        poll_until(DEADLINE, || bg.logs().contains("config file reload failed")),
        "{}",
        bg.logs()
    );
    assert!(bg.logs().contains("is not a scope a service may hold"));
    assert_eq!(get("/v1/whoami", Some(&stranger), None).0, 200);
    assert_eq!(get("/v1/whoami", Some(&rotator), None).0, 401);

    // A certificate is no session to log out of; a disabled service is refused.
    let (status, e) = call("POST", "/v1/logout", Some(&stranger), None);
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no session"),
        "{e}"
    );
    let d = bg.cli(&bg.admin_token, &["users", "disable", "rotator"]);
    assert_eq!(d.code, 0, "{d:?}");
    let (status, e) = get("/v1/whoami", Some(&stranger), None);
    assert_eq!(status, 401, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("disabled"),
        "{e}"
    );
    let logs = bg.logs();
    assert!(logs.contains("client certificate not mapped"), "{logs}");
    assert!(logs.contains("client certificate not accepted"), "{logs}");
}
