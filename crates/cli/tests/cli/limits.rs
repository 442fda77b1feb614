//! Limits against the real binary over real sockets: slow clients that stall mid-request do not
//! stop real ones and are cut off after the header timeout, the connection cap, a body that
//! does not arrive, and the per-source rate limit (`429` with `Retry-After`) while another
//! source address (`127.0.0.2`: loopback is all of 127.0.0.0/8) is still served.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;

use breakglass_testkit::Run;
use breakglass_testkit::tls::Ca;

use super::*;

fn broker(args: &[&str]) -> Broker {
    let mut bg = Broker::init(Path::new(BIN), &[("prod-db-admin.toml", DB_ROLE)]);
    bg.set_serve_args(args);
    bg.restart();
    bg
}

/// Opens `n` connections that each send `partial` and then stall.
fn stalled(bg: &Broker, n: usize, partial: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut s = TcpStream::connect(bg.addr())
                .unwrap_or_else(|e| panic!("slow connection {i}: {e}"));
            s.write_all(partial).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect()
}

/// Whether the server has closed `s` (end of stream or reset), reading whatever it sent first.
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// Polls until the server has closed every one of `conns`.
fn all_closed(mut conns: Vec<TcpStream>) -> bool {
    poll_until(DEADLINE, || {
        conns.retain_mut(|s| !closed(s));
        conns.is_empty()
    })
}

/// A request on an open connection: `(status, head, body)`. Reads exactly one response.
fn exchange(s: &mut TcpStream, request: &str) -> (u16, String, String) {
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed mid-response");
        raw.extend_from_slice(buf.get(..n).unwrap());
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map_or(0, |(_, v)| v.trim().parse().unwrap());
            if body.len() >= len {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                return (status, head.to_lowercase(), body.to_owned());
            }
        }
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: breakglass\r\n\r\n")
}

#[test]
fn five_hundred_half_open_connections_do_not_stop_a_real_request() {
    let bg = broker(&["--header-timeout", "3s"]);
    let slow = stalled(
        &bg,
        500,
        b"GET /healthz HTTP/1.1\r\nHost: breakglass\r\nX-Slow: ",
    );
    // A real client is served at once, through the CLI and over a raw socket.
    assert_eq!(bg.cli_json(&bg.admin_token, &["whoami"])["name"], "admin");
    let mut s = TcpStream::connect(bg.addr()).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let (status, head, _) = exchange(&mut s, &get("/healthz"));
    assert_eq!(status, 200);
    assert!(
        !head.contains("strict-transport-security"),
        "no HSTS over plain HTTP: {head}"
    );
    drop(s);
    // The slow ones are cut off after the header timeout, without any help from their side.
    assert!(all_closed(slow), "slow connections were never closed");
    assert_eq!(bg.cli_json(&bg.admin_token, &["whoami"])["name"], "admin");
}

#[test]
fn stalled_tls_handshakes_do_not_stop_a_real_request_and_are_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "ca");
    let server = ca.server("broker");
    let mut bg = Broker::init(Path::new(BIN), &[]);
    bg.set_serve_args(&[
        "--tls-cert",
        &server.cert_arg(),
        "--tls-key",
        &server.key_arg(),
        "--header-timeout",
        "3s",
    ]);
    bg.set_cli_env("BREAKGLASS_CA_CERT", &ca.pair.cert_arg());
    bg.restart();
    // The first bytes of a TLS record header of a ClientHello, then nothing.
    let slow = stalled(&bg, 200, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
    let r = Run::of(
        Command::new("curl")
            .args(["-sS", "--max-time", "60", "--cacert"])
            .arg(&ca.pair.cert)
            .arg(format!("{}/healthz", bg.url())),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(bg.cli_json(&bg.admin_token, &["whoami"])["name"], "admin");
    assert!(all_closed(slow), "stalled handshakes were never closed");
}

#[test]
fn the_connection_cap_holds_new_connections_until_one_closes() {
    let bg = broker(&["--max-connections", "5", "--header-timeout", "1m"]);
    let idle = stalled(&bg, 5, b"");
    assert!(
        poll_until(DEADLINE, || bg.logs().contains("connection limit reached")),
        "{}",
        bg.logs()
    );
    // A sixth client waits in the backlog, and is served once a slot frees.
    let addr = bg.addr();
    let waiting = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        exchange(&mut s, &get("/healthz")).0
    });
    drop(idle);
    assert_eq!(waiting.join().unwrap(), 200);
}

#[test]
fn a_body_that_does_not_arrive_in_time_gets_408() {
    let bg = broker(&["--body-timeout", "1s"]);
    let mut s = TcpStream::connect(bg.addr()).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let (status, _, body) = exchange(
        &mut s,
        "POST /v1/login HTTP/1.1\r\nHost: breakglass\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user\":",
    );
    assert_eq!(status, 408, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "request_timeout");
    assert_eq!(
        v["error"]["message"],
        "the request body did not arrive within 1s"
    );
    assert!(
        v["error"]["help"]
            .as_str()
            .unwrap()
            .contains("nothing was changed")
    );
}

#[test]
fn a_flood_from_one_source_gets_429_with_retry_after_and_another_source_is_served() {
    let bg = broker(&["--rate-limit", "1", "--rate-burst", "20"]);
    let mut s = TcpStream::connect(bg.addr()).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    // Every endpoint counts, answered or refused: a token-less whoami is a 401 until the flood
    // runs into the limit.
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..60 {
        let (status, head, body) = exchange(&mut s, &get("/v1/whoami"));
        statuses.push(status);
        if status == 429 {
            refused = Some((head, body));
            break;
        }
    }
    let (head, body) = refused.unwrap_or_else(|| panic!("never limited: {statuses:?}"));
    // The kit's own set-up (enrolling the admin) spent a few of the burst of 20.
    assert!(
        statuses.iter().filter(|s| **s == 401).count() >= 10,
        "{statuses:?}"
    );
    let retry: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after:"))
        .unwrap_or_else(|| panic!("no Retry-After: {head}"))
        .trim()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{head}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("too many requests from this address"),
        "{v}"
    );
    assert!(
        v["error"]["help"].as_str().unwrap().contains("Retry-After"),
        "{v}"
    );

    // Another source address is served all the while.
    let other = Run::of(Command::new("curl").args([
        "-sS",
        "--max-time",
        "60",
        "--interface",
        "127.0.0.2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{}/healthz", bg.url()),
    ]));
    assert_eq!((other.code, other.stdout.as_str()), (0, "200"), "{other:?}");
    // The CLI maps a 429 to "unavailable" (exit 7) with the broker's help.
    let r = bg.cli(&bg.admin_token, &["whoami"]);
    if r.code != 0 {
        assert_eq!(r.code, 7, "{r:?}");
        assert!(r.stderr.contains("Retry-After"), "{}", r.stderr);
    }
    // And the flooding source gets its turn back once it slows down.
    assert!(
        poll_until(DEADLINE, || exchange(&mut s, &get("/healthz")).0 == 200),
        "the source was never let back in"
    );
    // Limited requests are logged like any other, never with a token.
    let logs = bg.logs();
    assert!(logs.contains("\"status\":429"), "{logs}");
    assert!(!logs.contains(&bg.admin_token));
}

#[test]
fn behind_a_trusted_proxy_each_client_has_its_own_bucket_and_others_cannot_pick_one() {
    // 127.0.0.1 is the proxy; 127.0.0.2 is a client reaching the broker directly.
    let bg = broker(&[
        "--rate-limit",
        "1",
        "--rate-burst",
        "20",
        "--trusted-proxy",
        "127.0.0.1",
    ]);
    let via_proxy = |client: &str| {
        format!("GET /healthz HTTP/1.1\r\nHost: breakglass\r\nX-Forwarded-For: {client}\r\n\r\n")
    };
    let mut proxy = TcpStream::connect(bg.addr()).unwrap();
    proxy.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut flooded = false;
    for _ in 0..60 {
        if exchange(&mut proxy, &via_proxy("198.51.100.7")).0 == 429 {
            flooded = true;
            break;
        }
    }
    assert!(flooded, "the client behind the proxy was never limited");
    // Another client behind the same proxy is served: the proxy's address is not the bucket.
    assert_eq!(exchange(&mut proxy, &via_proxy("198.51.100.8")).0, 200);
    // A peer that is not a trusted proxy cannot name a fresh client to escape its own bucket.
    let from_two = |xff: &str| {
        Run::of(Command::new("curl").args([
            "-sS",
            "--max-time",
            "60",
            "--interface",
            "127.0.0.2",
            "-H",
            &format!("X-Forwarded-For: {xff}"),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{}/healthz", bg.url()),
        ]))
        .stdout
    };
    let mut codes = Vec::new();
    for i in 0..60 {
        let code = from_two(&format!("203.0.113.{i}"));
        codes.push(code.clone());
        if code == "429" {
            break;
        }
    }
    assert_eq!(codes.last().map(String::as_str), Some("429"), "{codes:?}");
}

#[test]
fn the_default_limits_never_throttle_normal_use() {
    // The defaults, as an operator gets them: 200 requests in a row from one source pass.
    let bg = broker(&[]);
    let mut s = TcpStream::connect(bg.addr()).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    for _ in 0..200 {
        assert_eq!(exchange(&mut s, &get("/healthz")).0, 200);
    }
    let line = bg
        .logs()
        .lines()
        .find(|l| l.contains("breakglass serving"))
        .unwrap()
        .to_owned();
    let v: Value = serde_json::from_str(&line).unwrap();
    let f = &v["fields"];
    assert_eq!(
        (
            f["header_timeout_s"].as_u64(),
            f["body_timeout_s"].as_u64(),
            f["request_timeout_s"].as_u64(),
            f["max_connections"].as_u64(),
            f["rate_limit"].as_u64(),
            f["rate_burst"].as_u64()
        ),
        (
            Some(10),
            Some(30),
            Some(60),
            Some(1024),
            Some(50),
            Some(500)
        ),
        "{line}"
    );
}
