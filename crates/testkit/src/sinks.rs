//! Receivers for alert channels: an SMTP server that keeps every mail it is given, and syslog
//! receivers over UDP, over TCP (RFC 6587 octet counting) and over TLS (RFC 5425: the same frames
//! inside a TLS session). Each listens on 127.0.0.1 at a port the kernel picks (the TCP one can
//! also take a given address, to come up where a collector was down) and runs on its own threads
//! with plain blocking std IO, so a test needs no tokio runtime to start or read one. Each stops
//! when dropped.

use std::io::{BufRead as _, BufReader, ErrorKind, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::DEADLINE;

/// How often a sink's thread looks at its stop flag.
const TICK: Duration = Duration::from_millis(20);

/// One mail as the SMTP sink received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    /// The `MAIL FROM` address, without angle brackets.
    pub from: String,
    /// Every accepted `RCPT TO` address, without angle brackets, in order.
    pub to: Vec<String>,
    /// The DATA, dot-unstuffed, line endings as sent (CRLF), without the final `.` line.
    pub data: String,
    /// The user name the client authenticated as, if it did.
    pub auth: Option<String>,
}

impl Mail {
    /// The first header called `name` (case-insensitive), its folded lines joined.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let mut found: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(v) = found.as_mut() {
                    v.push_str(line);
                }
                continue;
            }
            if found.is_some() {
                break;
            }
            if let Some((n, v)) = line.split_once(':')
                && n.eq_ignore_ascii_case(name)
            {
                found = Some(v.trim_start().to_owned());
            }
        }
        found
    }

    /// Everything after the header block, with LF line endings.
    pub fn body(&self) -> String {
        self.data
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.replace("\r\n", "\n"))
            .unwrap_or_default()
    }
}

/// What the SMTP sink has and how it behaves; shared with its connection threads.
#[derive(Default)]
struct SmtpState {
    messages: Vec<Mail>,
    refuse: Option<u16>,
    auth: Option<(String, String)>,
}

/// A plaintext SMTP server speaking EHLO/HELO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP and QUIT.
pub struct SmtpSink {
    addr: SocketAddr,
    state: Arc<Mutex<SmtpState>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl SmtpSink {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(SmtpState::default()));
        let conns = Arc::clone(&state);
        let (addr, stop, acceptor) = accept_loop("smtp sink", LOOPBACK_ANY, move |stream| {
            let _ = smtp_session(stream, &conns);
        });
        Self {
            addr,
            state,
            stop,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every mail accepted so far, in order.
    pub fn messages(&self) -> Vec<Mail> {
        lock(&self.state).messages.clone()
    }

    /// With `Some(code)`, every `RCPT TO` is answered with `code` (550 for a permanent
    /// refusal, 451 for a transient one); `None` accepts again.
    pub fn set_refuse(&self, code: Option<u16>) {
        lock(&self.state).refuse = code;
    }

    /// Offers AUTH PLAIN and requires exactly these credentials before `MAIL FROM`
    /// (535 for wrong ones, 530 for none).
    pub fn require_auth(&self, user: &str, password: &str) {
        lock(&self.state).auth = Some((user.to_owned(), password.to_owned()));
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

/// A syslog receiver on UDP: each datagram is one frame.
pub struct SyslogUdpSink {
    addr: SocketAddr,
    frames: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl SyslogUdpSink {
    pub fn start() -> Self {
        let socket =
            UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("syslog udp sink: {e}"));
        let addr = socket
            .local_addr()
            .unwrap_or_else(|e| panic!("syslog udp sink: {e}"));
        socket
            .set_read_timeout(Some(TICK))
            .unwrap_or_else(|e| panic!("syslog udp sink: {e}"));
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (frames2, stop2) = (Arc::clone(&frames), Arc::clone(&stop));
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !stop2.load(Ordering::SeqCst) {
                if let Ok((n, _)) = socket.recv_from(&mut buf) {
                    let frame = String::from_utf8_lossy(buf.get(..n).unwrap_or_default());
                    lock(&frames2).push(frame.into_owned());
                }
            }
        });
        Self {
            addr,
            frames,
            stop,
            reader: Some(reader),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every datagram so far, in arrival order.
    pub fn frames(&self) -> Vec<String> {
        lock(&self.frames).clone()
    }
}

impl Drop for SyslogUdpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

/// A syslog receiver on TCP with RFC 6587 octet-counting framing (`<len> <msg>`): frames may
/// arrive several to a read or split across reads, over one connection or many.
pub struct SyslogTcpSink {
    addr: SocketAddr,
    frames: Arc<Mutex<Vec<String>>>,
    wire: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl SyslogTcpSink {
    pub fn start() -> Self {
        Self::start_at(LOOPBACK_ANY.into())
    }

    /// Listens on `addr`: a collector coming up where a client already tried to reach it (take
    /// the address from [`closed_addr`]).
    pub fn start_at(addr: SocketAddr) -> Self {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let wire = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (frames2, wire2, connections2) = (
            Arc::clone(&frames),
            Arc::clone(&wire),
            Arc::clone(&connections),
        );
        let (addr, stop, acceptor) = accept_loop("syslog tcp sink", addr, move |stream| {
            *lock(&connections2) += 1;
            let mut stream = Recorded {
                stream,
                wire: Arc::clone(&wire2),
            };
            let _ = octet_counted_session(&mut stream, &frames2);
        });
        Self {
            addr,
            frames,
            wire,
            connections,
            stop,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every complete frame so far (the message, without its length prefix), in order. A
    /// malformed prefix is recorded as `<malformed: …>` and ends that connection.
    pub fn frames(&self) -> Vec<String> {
        lock(&self.frames).clone()
    }

    /// Every byte received so far, length prefixes included, in arrival order (connections open
    /// at the same time interleave).
    pub fn wire(&self) -> Vec<u8> {
        lock(&self.wire).clone()
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        *lock(&self.connections)
    }
}

impl Drop for SyslogTcpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

/// A syslog receiver over TLS (RFC 5425): octet-counted frames, as over TCP, inside a TLS session
/// in which it presents the certificate it was started with. Besides the frames it decrypts, it
/// keeps every byte that arrived on the wire (TLS records, before decryption), so a test can show
/// that nothing reached it in clear, and the TLS error that ended each failed session.
pub struct SyslogTlsSink {
    addr: SocketAddr,
    frames: Arc<Mutex<Vec<String>>>,
    wire: Arc<Mutex<Vec<u8>>>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl SyslogTlsSink {
    /// `cert_chain_pem`: the collector's certificate, then any intermediates; `key_pem`: its
    /// private key (PKCS#8, PKCS#1 or SEC1), all PEM. TLS 1.2 and 1.3 on the ring provider.
    pub fn start(cert_chain_pem: &str, key_pem: &str) -> Self {
        let certs = CertificateDer::pem_slice_iter(cert_chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|e| panic!("syslog tls sink: certificate PEM: {e}"));
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .unwrap_or_else(|e| panic!("syslog tls sink: key PEM: {e}"));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("syslog tls sink: {e}"))
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap_or_else(|e| panic!("syslog tls sink: {e}"));
        let config = Arc::new(config);
        let frames = Arc::new(Mutex::new(Vec::new()));
        let wire = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let (frames2, wire2, errors2) =
            (Arc::clone(&frames), Arc::clone(&wire), Arc::clone(&errors));
        let (addr, stop, acceptor) = accept_loop("syslog tls sink", LOOPBACK_ANY, move |stream| {
            let wire = Recorded {
                stream,
                wire: Arc::clone(&wire2),
            };
            // A handshake error surfaces from the first read, as an io::Error around
            // rustls's own.
            let ended = match rustls::ServerConnection::new(Arc::clone(&config)) {
                Ok(c) => octet_counted_session(&mut rustls::StreamOwned::new(c, wire), &frames2)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = ended {
                lock(&errors2).push(e);
            }
        });
        Self {
            addr,
            frames,
            wire,
            errors,
            stop,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every complete frame decrypted so far, as [`SyslogTcpSink::frames`].
    pub fn frames(&self) -> Vec<String> {
        lock(&self.frames).clone()
    }

    /// Every byte received on any connection, as it came off the wire.
    pub fn wire(&self) -> Vec<u8> {
        lock(&self.wire).clone()
    }

    /// The error that ended each session that did not end cleanly (a handshake the client
    /// refused shows up here as the alert it sent), in order.
    pub fn errors(&self) -> Vec<String> {
        lock(&self.errors).clone()
    }
}

impl Drop for SyslogTlsSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

/// An address on 127.0.0.1 where nothing listens (a port just released), for "connection
/// refused" tests.
pub fn closed_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    l.local_addr().unwrap_or_else(|e| panic!("local addr: {e}"))
}

/// 127.0.0.1 at a port the kernel picks.
const LOOPBACK_ANY: ([u8; 4], u16) = ([127, 0, 0, 1], 0);

/// A connection that keeps a copy of every byte read from it.
struct Recorded {
    stream: TcpStream,
    wire: Arc<Mutex<Vec<u8>>>,
}

impl std::io::Read for Recorded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.stream.read(buf)?;
        lock(&self.wire).extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl std::io::Write for Recorded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Listens on `addr` and runs `serve` on its own thread for each connection until the returned
/// flag is set.
fn accept_loop(
    what: &'static str,
    addr: impl Into<SocketAddr>,
    serve: impl Fn(TcpStream) + Send + Sync + 'static,
) -> (SocketAddr, Arc<AtomicBool>, JoinHandle<()>) {
    let addr = addr.into();
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("{what} on {addr}: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let serve = Arc::new(serve);
    let handle = std::thread::spawn(move || {
        while !stop2.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(DEADLINE));
                    let serve = Arc::clone(&serve);
                    std::thread::spawn(move || serve(stream));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(TICK),
                Err(_) => std::thread::sleep(TICK),
            }
        }
    });
    (addr, stop, handle)
}

/// One line without its CRLF, or `None` at end of stream.
fn read_line(input: &mut BufReader<TcpStream>) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    if input.read_until(b'\n', &mut buf)? == 0 {
        return Ok(None);
    }
    let line = String::from_utf8_lossy(&buf);
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
}

fn smtp_session(stream: TcpStream, state: &Mutex<SmtpState>) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    let mut reply = |text: &str| out.write_all(format!("{text}\r\n").as_bytes());
    reply("220 breakglass-testkit ESMTP sink")?;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut authed: Option<String> = None;
    while let Some(line) = read_line(&mut input)? {
        let (verb, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                let auth = if lock(state).auth.is_some() {
                    "250-AUTH PLAIN\r\n"
                } else {
                    ""
                };
                reply(&format!(
                    "250-breakglass-testkit\r\n250-8BITMIME\r\n{auth}250 SMTPUTF8"
                ))?;
            }
            "HELO" => reply("250 breakglass-testkit")?,
            "AUTH" => {
                let mut parts = arg.split_whitespace();
                if !parts
                    .next()
                    .is_some_and(|m| m.eq_ignore_ascii_case("PLAIN"))
                {
                    reply("504 5.5.4 only AUTH PLAIN is offered")?;
                    continue;
                }
                let blob = match parts.next() {
                    Some(b) => b.to_owned(),
                    None => {
                        reply("334 ")?;
                        read_line(&mut input)?.unwrap_or_default()
                    }
                };
                let decoded = base64_decode(&blob).unwrap_or_default();
                let decoded = String::from_utf8_lossy(&decoded);
                let mut creds = decoded.split('\0').skip(1);
                let given = (creds.next().unwrap_or_default(), creds.next());
                let want = lock(state).auth.clone();
                match want {
                    Some((user, pass)) if given.0 == user && given.1 == Some(pass.as_str()) => {
                        authed = Some(user);
                        reply("235 2.7.0 authentication succeeded")?;
                    }
                    _ => reply("535 5.7.8 authentication credentials invalid")?,
                }
            }
            "MAIL" => {
                if lock(state).auth.is_some() && authed.is_none() {
                    reply("530 5.7.0 authentication required")?;
                    continue;
                }
                from = Some(angle_address(arg));
                to.clear();
                reply("250 2.1.0 ok")?;
            }
            "RCPT" => {
                let addr = angle_address(arg);
                if from.is_none() {
                    reply("503 5.5.1 MAIL first")?;
                    continue;
                }
                match lock(state).refuse {
                    Some(code) if code >= 500 => {
                        reply(&format!("{code} 5.7.1 <{addr}> refused by the test sink"))?;
                    }
                    Some(code) => {
                        reply(&format!("{code} 4.3.0 <{addr}> try again later"))?;
                    }
                    None => {
                        to.push(addr);
                        reply("250 2.1.5 ok")?;
                    }
                }
            }
            "DATA" => {
                let Some(sender) = from.take().filter(|_| !to.is_empty()) else {
                    reply("503 5.5.1 no valid recipients")?;
                    continue;
                };
                reply("354 end data with <CR><LF>.<CR><LF>")?;
                let mut data = String::new();
                loop {
                    let mut buf = Vec::new();
                    if input.read_until(b'\n', &mut buf)? == 0 {
                        return Ok(());
                    }
                    let text = String::from_utf8_lossy(&buf);
                    if text.trim_end_matches(['\r', '\n']) == "." {
                        break;
                    }
                    data.push_str(text.strip_prefix('.').unwrap_or(&text));
                }
                lock(state).messages.push(Mail {
                    from: sender,
                    to: std::mem::take(&mut to),
                    data,
                    auth: authed.clone(),
                });
                reply("250 2.0.0 queued")?;
            }
            "RSET" => {
                from = None;
                to.clear();
                reply("250 2.0.0 ok")?;
            }
            "NOOP" => reply("250 2.0.0 ok")?,
            "QUIT" => {
                reply("221 2.0.0 bye")?;
                return Ok(());
            }
            _ => reply("502 5.5.2 command not recognised")?,
        }
    }
    Ok(())
}

/// `FROM:<a@b> BODY=8BITMIME` → `a@b`.
fn angle_address(arg: &str) -> String {
    let start = arg.find('<').map_or(0, |i| i + 1);
    let rest = arg.get(start..).unwrap_or_default();
    rest.split('>').next().unwrap_or_default().to_owned()
}

/// Standard base64 with optional padding; `None` on any other character.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = ((acc << 6) | u32::from(v)) & 0xffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// Reads `<len> <msg>` frames until the peer closes, keeping partial frames across reads. A
/// malformed prefix ends the session (recorded as a frame); a read error is returned.
fn octet_counted_session(
    stream: &mut impl std::io::Read,
    frames: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match stream.read(&mut buf)? {
            0 => return Ok(()),
            n => n,
        };
        pending.extend_from_slice(&buf[..n]);
        loop {
            let Some(space) = pending.iter().position(|b| *b == b' ') else {
                if !pending.iter().all(u8::is_ascii_digit) {
                    let bad = String::from_utf8_lossy(&pending).into_owned();
                    lock(frames).push(format!("<malformed: {bad}>"));
                    return Ok(());
                }
                break;
            };
            let prefix = String::from_utf8_lossy(&pending[..space]).into_owned();
            let Some(len) = prefix
                .parse::<usize>()
                .ok()
                .filter(|_| prefix.bytes().all(|b| b.is_ascii_digit()))
            else {
                lock(frames).push(format!("<malformed: {prefix}>"));
                return Ok(());
            };
            let end = space + 1 + len;
            if pending.len() < end {
                break;
            }
            let frame = String::from_utf8_lossy(&pending[space + 1..end]).into_owned();
            lock(frames).push(frame);
            pending.drain(..end);
        }
    }
}
