//! The tamper-evident audit log end to end: the CLI's key, checkpoint, proofs and export checked
//! by independent implementations (Cloudflare's `tlog_tiles` and `signed_note`, ports of Go's
//! `sumdb/tlog` and `sumdb/note`), and `audit verify` against real tampering of a real SQLite file.

use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use sqlx::Connection as _;

use super::*;

/// An in-memory hash store in Go's stored-hash layout, filled independently of our code.
struct Stored(Vec<tlog_tiles::Hash>);

impl tlog_tiles::HashReader for Stored {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        Ok(indexes.iter().map(|&i| self.0[i as usize]).collect())
    }
}

fn independent_tree(leaves: &[Vec<u8>]) -> Stored {
    let mut s = Stored(Vec::new());
    for (n, data) in leaves.iter().enumerate() {
        let new = tlog_tiles::stored_hashes(n as u64, data, &s).unwrap();
        s.0.extend(new);
    }
    s
}

fn b64hash(s: &str) -> tlog_tiles::Hash {
    tlog_tiles::Hash(B64.decode(s).unwrap().try_into().unwrap())
}

fn busy_world() -> World {
    let w = world();
    let id = active_grant(&w, "30m");
    w.bg.cli_json(&w.alice, &["credential", &id]);
    w.bg.cli_json(&w.alice, &["revoke", &id, "--reason", "done"]);
    request(&w, "10m");
    w
}

#[test]
fn checkpoints_proofs_and_export_verify_with_independent_tools() {
    let w = busy_world();
    let admin = w.bg.admin_token.clone();

    let key_run = w.bg.cli(&admin, &["audit", "key"]);
    assert_eq!(key_run.code, 0, "{key_run:?}");
    let key = key_run.stdout.lines().last().unwrap().to_owned();
    assert!(key.starts_with("breakglass/"), "{key}");
    assert_eq!(key, w.bg.audit_key, "`init` printed the same verifier key");
    let tail = w.bg.cli_json(&admin, &["audit", "tail", "-n", "10000"]);
    let created = tail
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "audit.key_created")
        .expect("the key's creation is audited");
    assert_eq!(created["key"], key.as_str());

    let cp_run = w.bg.cli(&admin, &["audit", "checkpoint"]);
    assert_eq!(cp_run.code, 0);
    let note = signed_note::Note::from_bytes(cp_run.stdout.as_bytes()).expect("a C2SP signed note");
    let verifier = signed_note::StandardVerifier::new(&key).expect("a C2SP verifier key");
    note.verify(&signed_note::VerifierList::new(vec![Box::new(verifier)]))
        .expect("signed by the published key");
    let cp = tlog_tiles::Checkpoint::from_bytes(note.text()).expect("a C2SP checkpoint");
    assert_eq!(cp.origin(), key.split('+').next().unwrap());

    // export: one line per event, `leaf` is the exact hashed bytes
    let export = w.bg.cli(&admin, &["audit", "export"]);
    assert_eq!(export.code, 0);
    let lines: Vec<Value> = export
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let leaves: Vec<Vec<u8>> = lines
        .iter()
        .map(|l| B64.decode(l["leaf"].as_str().unwrap()).unwrap())
        .collect();
    for (i, (l, bytes)) in lines.iter().zip(&leaves).enumerate() {
        assert_eq!(l["seq"], i as u64);
        let decoded: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(
            decoded["type"], l["type"],
            "the decoded fields are the leaf's"
        );
    }
    let n = cp.size();
    assert!(leaves.len() as u64 >= n);
    let stored = independent_tree(&leaves[..n as usize]);
    assert_eq!(
        tlog_tiles::tree_hash(n, &stored).unwrap(),
        *cp.hash(),
        "an independent RFC 6962 implementation computes the signed root from the export"
    );

    for seq in [0, n / 2, n - 1] {
        let p = w.bg.cli_json(&admin, &["audit", "prove", &seq.to_string()]);
        assert_eq!(p["index"], seq);
        assert_eq!(p["tree_size"], n);
        assert_eq!(b64hash(p["root_hash"].as_str().unwrap()), *cp.hash());
        let proof: Vec<tlog_tiles::Hash> = p["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| b64hash(h.as_str().unwrap()))
            .collect();
        let leaf = tlog_tiles::record_hash(&leaves[seq as usize]);
        assert_eq!(b64hash(p["leaf_hash"].as_str().unwrap()), leaf);
        tlog_tiles::check_record(&proof, n, *cp.hash(), seq, leaf)
            .expect("independent inclusion check");
    }
    let old = n / 2;
    let c = w.bg.cli_json(
        &admin,
        &[
            "audit",
            "consistency",
            &old.to_string(),
            "--to",
            &n.to_string(),
        ],
    );
    let proof: Vec<tlog_tiles::Hash> = c["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| b64hash(h.as_str().unwrap()))
        .collect();
    let old_root = tlog_tiles::tree_hash(old, &independent_tree(&leaves[..old as usize])).unwrap();
    tlog_tiles::check_tree(&proof, n, *cp.hash(), old, old_root)
        .expect("independent consistency check");

    // readable by admins and auditors only
    let r = w.bg.cli(&w.alice, &["audit", "checkpoint"]);
    assert_eq!(r.code, 4, "{r:?}");
    let r = w.bg.cli(&admin, &["audit", "prove", "999999"]);
    assert_eq!(r.code, 6, "{r:?}");
    assert!(r.stderr.contains("is not in the log"), "{}", r.stderr);

    // every activation published a checkpoint outside the database
    let published = std::fs::read_to_string(w.bg.data_dir().join("checkpoints.log")).unwrap();
    assert!(published.lines().count() >= 1);
}

/// A stopped broker's data directory, copied so each tamper case starts from the same log.
struct Evidence {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    trusted: std::path::PathBuf,
    key: String,
}

fn evidence(w: &mut World) -> Evidence {
    let admin = w.bg.admin_token.clone();
    let key =
        w.bg.cli(&admin, &["audit", "key"])
            .stdout
            .lines()
            .last()
            .unwrap()
            .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let trusted = dir.path().join("trusted.checkpoint");
    let cp = w.bg.cli(&admin, &["audit", "checkpoint"]);
    std::fs::write(&trusted, &cp.stdout).unwrap();
    // a few more events after the auditor kept the checkpoint
    request(w, "10m");
    request(w, "10m");
    w.bg.cli_json(&admin, &["audit", "checkpoint"]);
    w.bg.kill9();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for e in std::fs::read_dir(w.bg.data_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, data.join(p.file_name().unwrap())).unwrap();
        }
    }
    Evidence {
        _dir: dir,
        data,
        trusted,
        key,
    }
}

fn verify(e: &Evidence, extra: &[&str]) -> breakglass_testkit::Run {
    let mut args = vec![
        "audit",
        "verify",
        "--data-dir",
        e.data.to_str().unwrap(),
        "--key",
        &e.key,
    ];
    args.extend(extra);
    breakglass_testkit::Run::of(Command::new(BIN).args(&args))
}

fn tamper(e: &Evidence, sql: &[&str]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = format!("sqlite://{}", e.data.join("breakglass.db").display());
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        for s in [
            "DROP TRIGGER IF EXISTS audit_checkpoints_no_delete",
            "DROP TRIGGER IF EXISTS audit_log_no_update",
            "DROP TRIGGER IF EXISTS audit_log_no_delete",
            "DROP TRIGGER IF EXISTS audit_checkpoints_no_update",
        ] {
            sqlx::query(s).execute(&mut c).await.unwrap();
        }
        for s in sql {
            sqlx::query(sqlx::AssertSqlSafe(s.to_string()))
                .execute(&mut c)
                .await
                .unwrap();
        }
        c.close().await.unwrap();
    });
}

#[test]
fn audit_verify_passes_an_untouched_log_and_names_each_kind_of_tampering() {
    let mut w = busy_world();
    let base = evidence(&mut w);
    let trusted = base.trusted.to_str().unwrap().to_owned();

    let ok = verify(&base, &["--trusted", &trusted]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(
        ok.stdout.contains("verified:") && ok.stdout.contains("consistent with the log now"),
        "{}",
        ok.stdout
    );
    let json = verify(&base, &["--trusted", &trusted, "--output", "json"]).json();
    assert_eq!(json["verified"], true);
    let size = json["events"].as_u64().unwrap();
    let mid = size / 2;

    let cases: Vec<(&str, Vec<String>, String)> = vec![
        (
            "edit one byte of a middle event",
            vec![format!(
                "UPDATE audit_log SET bytes = CAST(replace(CAST(bytes AS TEXT), '\"v\":1', '\"v\":2') AS BLOB) WHERE seq = {mid}"
            )],
            format!("seq {mid}: its bytes do not hash to the leaf hash recorded"),
        ),
        (
            "delete a middle event",
            vec![format!("DELETE FROM audit_log WHERE seq = {mid}")],
            format!("seq {mid}: is missing"),
        ),
        (
            "reorder two events",
            vec![
                format!("UPDATE audit_log SET seq = -1 WHERE seq = {mid}"),
                format!("UPDATE audit_log SET seq = {mid} WHERE seq = {}", mid + 1),
                format!("UPDATE audit_log SET seq = {} WHERE seq = -1", mid + 1),
            ],
            format!(
                "seq {mid}: its bytes say seq {} (events were reordered",
                mid + 1
            ),
        ),
    ];
    for (what, sql, want) in cases {
        let e = evidence_copy(&base);
        tamper(&e, &sql.iter().map(String::as_str).collect::<Vec<_>>());
        let r = verify(&e, &["--trusted", &trusted]);
        assert_eq!(r.code, 9, "{what}: {r:?}");
        assert!(
            r.stderr.contains(&want),
            "{what}: expected `{want}` in {}",
            r.stderr
        );
        assert!(
            r.stderr.contains("audit log verification failed"),
            "{what}: {}",
            r.stderr
        );
    }

    // delete the tail after the trusted checkpoint (and cover it up: drop the later checkpoints
    // and the published log)
    let trusted_size: u64 = std::fs::read_to_string(&base.trusted)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let e = evidence_copy(&base);
    let cut = trusted_size - 2;
    tamper(
        &e,
        &[
            &format!("DELETE FROM audit_log WHERE seq >= {cut}"),
            &format!("DELETE FROM audit_checkpoints WHERE size > {cut}"),
        ],
    );
    std::fs::remove_file(e.data.join("checkpoints.log")).unwrap();
    let r = verify(&e, &["--trusted", &trusted]);
    assert_eq!(r.code, 9, "{r:?}");
    assert!(
        r.stderr.contains(&format!("seq {cut}: trusted checkpoint"))
            || r.stderr
                .contains(&format!("events from seq {cut} on were deleted")),
        "{}",
        r.stderr
    );

    // replace a stored checkpoint with one signed by another key
    let e = evidence_copy(&base);
    let forger =
        breakglass_audit::NoteSigner::new(base.key.split('+').next().unwrap(), &[13; 32]).unwrap();
    let text = format!(
        "{}\n{}\n{}\n",
        base.key.split('+').next().unwrap(),
        3,
        breakglass_audit::EMPTY_ROOT.to_base64()
    );
    let forged = forger.sign(&text).unwrap().replace('\'', "''");
    tamper(
        &e,
        &[
            "DELETE FROM audit_checkpoints WHERE size = (SELECT MIN(size) FROM audit_checkpoints)",
            &format!(
                "INSERT INTO audit_checkpoints (size, note, signed_at) VALUES (3, '{forged}', 0)"
            ),
        ],
    );
    let r = verify(&e, &[]);
    assert_eq!(r.code, 9, "{r:?}");
    assert!(
        r.stderr
            .contains("database checkpoint at size 3: note is not signed by"),
        "{}",
        r.stderr
    );

    // a wrong pinned key is refused outright
    let other = breakglass_audit::NoteSigner::new("someone/else", &[1; 32])
        .unwrap()
        .verifier()
        .encode();
    let out = Command::new(BIN)
        .args([
            "audit",
            "verify",
            "--data-dir",
            base.data.to_str().unwrap(),
            "--key",
            &other,
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn evidence_copy(base: &Evidence) -> Evidence {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for e in std::fs::read_dir(&base.data).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, data.join(p.file_name().unwrap())).unwrap();
    }
    Evidence {
        _dir: dir,
        data,
        trusted: base.trusted.clone(),
        key: base.key.clone(),
    }
}

/// Checkpoints are also signed on a schedule when the log grew, and `audit verify` takes a
/// `sqlite://` URL as well as a data directory.
#[test]
fn checkpoints_are_signed_on_schedule_and_verify_takes_a_database_url() {
    let mut w = world();
    w.bg.kill9();
    w.bg.set_env("BREAKGLASS_CHECKPOINT_INTERVAL", "1s");
    w.bg.restart();
    let log = w.bg.data_dir().join("checkpoints.log");
    let count = || {
        std::fs::read_to_string(&log)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let before = count();
    w.bg.user("zed", &[]); // the log grows; no activation, no one asks for a checkpoint
    assert!(
        poll_until(DEADLINE, || count() > before),
        "no scheduled checkpoint was published"
    );
    let last: Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert!(
        last["note"]
            .as_str()
            .unwrap()
            .contains("\n\n\u{2014} breakglass/")
    );

    let r = w.bg.cli(
        "",
        &[
            "serve",
            "--checkpoint-interval",
            "soon",
            "--data-dir",
            "/nonexistent",
        ],
    );
    assert_eq!(r.code, 6, "{r:?}");
    assert!(
        r.stderr
            .contains("`--checkpoint-interval`: invalid duration `soon`"),
        "{}",
        r.stderr
    );

    w.bg.kill9();
    let url = format!(
        "sqlite://{}",
        w.bg.data_dir().join("breakglass.db").display()
    );
    let out = Command::new(BIN)
        .args(["audit", "verify", "--database", &url, "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verified"], true);
    let out = Command::new(BIN)
        .args(["audit", "verify", "--database", "mysql://x/y"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("neither a `sqlite://PATH` nor a `postgres://` URL")
    );
    // A PostgreSQL store that does not answer: a clear refusal, with no password repeated.
    let out = Command::new(BIN)
        .args([
            "audit",
            "verify",
            "--database",
            "postgres://auditor:s3cret-pw@127.0.0.1:9/y",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(
        err.contains("cannot open database `postgres://auditor:***@127.0.0.1:9/y`"),
        "{err}"
    );
    assert!(!err.contains("s3cret-pw"), "{err}");
}
