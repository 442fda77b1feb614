//! Bad input gets a clear error and changes nothing: each case checks the exit code, the message
//! (lowercase, input in backticks), the help text, and that no grant changed.

use serde_json::Value;

use super::*;

/// Every grant's id and state, and the number of audit events other than `auth.denied`.
fn snapshot(w: &World) -> (Vec<(String, String)>, usize) {
    let grants = w.bg.cli_json(&w.bg.admin_token, &["grants", "list"]);
    let mut g: Vec<(String, String)> = grants
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["id"].as_str().unwrap().to_owned(),
                g["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    g.sort();
    let audit =
        w.bg.cli_json(&w.bg.admin_token, &["audit", "tail", "-n", "10000"]);
    let changes = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] != "auth.denied")
        .count();
    (g, changes)
}

fn denials(w: &World) -> Vec<Value> {
    let audit =
        w.bg.cli_json(&w.bg.admin_token, &["audit", "tail", "-n", "10000"]);
    audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "auth.denied")
        .cloned()
        .collect()
}

#[track_caller]
fn refused(w: &World, token: &str, args: &[&str], exit: i32, message: &str, help: &str) {
    let before = snapshot(w);
    let r = w.bg.cli(token, args);
    assert_eq!(r.code, exit, "{args:?}: {r:#?}");
    let first = r.stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("error: "), "{args:?}: {}", r.stderr);
    assert!(
        first.contains(message),
        "{args:?}: expected `{message}` in {}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!("help: {help}")) || r.stderr.contains(help),
        "{args:?}: expected help `{help}` in {}",
        r.stderr
    );
    let msg = first.trim_start_matches("error: ");
    assert!(
        msg.chars().next().is_some_and(|c| !c.is_uppercase()) && !msg.ends_with('.'),
        "style: {msg}"
    );
    assert_eq!(snapshot(w), before, "{args:?} changed something");
    // the same refusal as JSON
    let mut json_args = args.to_vec();
    json_args.extend(["--output", "json"]);
    let r = w.bg.cli(token, &json_args);
    assert_eq!(r.code, exit);
    let e: Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert!(e["error"]["message"].as_str().unwrap().contains(message));
    assert!(!e["error"]["help"].as_str().unwrap().is_empty());
}

#[test]
fn refused_requests_change_nothing_and_say_what_to_do() {
    let w = world();
    let (a, b) = (w.alice.as_str(), w.bob.as_str());
    let base = [
        "request",
        "prod-db-admin",
        "--reason",
        "db down",
        "--incident",
        "INC-1",
    ];

    refused(
        &w,
        a,
        &["request", "nope", "--reason", "x"],
        5,
        "unknown role `nope`",
        "breakglass roles list",
    );
    refused(
        &w,
        a,
        &[&base[..], &["--duration", "2h"]].concat(),
        6,
        "duration `2h` is longer than role `prod-db-admin` allows (`1h`)",
        "ask for `1h` or less",
    );
    refused(
        &w,
        a,
        &[&base[..], &["--duration", "forever"]].concat(),
        6,
        "invalid duration `forever`",
        "`30s`, `10m`",
    );
    refused(
        &w,
        a,
        &["request", "prod-db-admin", "--reason", "db down"],
        6,
        "role `prod-db-admin` requires an incident reference",
        "--incident",
    );
    refused(
        &w,
        a,
        &[
            "request",
            "prod-db-admin",
            "--reason",
            "db down",
            "--incident",
            "OPS-9",
        ],
        6,
        "incident reference `OPS-9` does not match `^INC-[0-9]+$`",
        "in the form",
    );
    refused(
        &w,
        a,
        &[
            "request",
            "prod-db-admin",
            "--reason",
            "  ",
            "--incident",
            "INC-1",
        ],
        6,
        "invalid `reason`: it must not be empty",
        "correct the field",
    );
    refused(
        &w,
        b,
        &base,
        4,
        "`bob` may not request role `prod-db-admin`",
        "requesters",
    );

    let id = request(&w, "30m");
    refused(
        &w,
        a,
        &["approve", &id],
        4,
        &format!("`alice` requested grant `{id}` and cannot approve it"),
        "nobody approves their own request",
    );
    let outsider = w.bg.user("dave", &["sre"]);
    refused(
        &w,
        &outsider,
        &["approve", &id],
        4,
        "`dave` may not approve requests for role `prod-db-admin`",
        "approval.approvers",
    );
    refused(
        &w,
        a,
        &["credential", &id],
        6,
        &format!("grant `{id}` is `requested`, so it has no credential"),
        "grants show",
    );
    refused(
        &w,
        a,
        &["revoke", &id, "--reason", "x"],
        6,
        &format!("grant `{id}` is `requested`"),
        "grants show",
    );
    refused(
        &w,
        a,
        &["approve", "not-a-grant"],
        6,
        "invalid grant id `not-a-grant`",
        "grants list",
    );
    refused(
        &w,
        a,
        &["approve", "00000000-0000-4000-8000-000000000000"],
        5,
        "unknown grant `00000000-0000-4000-8000-000000000000`",
        "grants list",
    );

    // a second approval by the same person does not count twice (quorum 2)
    let pay = w.bg.cli_json(
        a,
        &["request", "payments-readonly", "--reason", "refund stuck"],
    );
    let pay = pay["id"].as_str().unwrap().to_owned();
    assert_eq!(w.bg.cli_json(b, &["approve", &pay])["state"], "requested");
    refused(
        &w,
        b,
        &["approve", &pay],
        6,
        &format!("`bob` has already approved grant `{pay}`"),
        "distinct people",
    );
    assert_eq!(
        w.bg.cli_json(&w.carol, &["approve", &pay])["state"],
        "active"
    );

    // approve of a grant that is not `requested`
    refused(
        &w,
        &w.carol,
        &["approve", &pay],
        6,
        &format!("grant `{pay}` is `active`"),
        "grants show",
    );
    // revoke of an ended grant
    w.bg.cli_json(a, &["revoke", &pay, "--reason", "done"]);
    refused(
        &w,
        a,
        &["revoke", &pay, "--reason", "again"],
        6,
        &format!("grant `{pay}` has already ended (`revoked`)"),
        "grants show",
    );
    refused(
        &w,
        a,
        &["grants", "list", "--state", "bogus"],
        6,
        "invalid `state`: `bogus` is not one of requested",
        "correct the field",
    );
    refused(
        &w,
        a,
        &["audit", "tail"],
        4,
        "`alice` may not read the audit log",
        "admins",
    );
    refused(
        &w,
        a,
        &["users", "add", "eve"],
        4,
        "policy does not allow `alice` to `administer` on this installation",
        "breakglass policy explain --principal alice --action administer",
    );
    refused(
        &w,
        &w.bg.admin_token,
        &["users", "add", "Eve!"],
        6,
        "invalid name `Eve!`",
        "a-z",
    );
    refused(
        &w,
        &w.bg.admin_token,
        &["users", "add", "alice"],
        6,
        "user `alice` already exists",
        "another name",
    );

    // every refusal of an authenticated caller is an `auth.denied` event, with no secret in it
    let d = denials(&w);
    assert!(
        d.len() >= 40,
        "each refusal above (twice) is audited: {}",
        d.len()
    );
    assert!(
        d.iter().any(|e| e["code"] == "self_approval"
            && e["actor"] == "user:alice"
            && e["grant"] == id.as_str()),
        "a refusal about a grant names the grant"
    );
    assert!(
        d.iter()
            .any(|e| e["code"] == "unknown_role" && e["action"] == "grant.request")
    );
}

#[test]
fn malformed_and_oversized_bodies_and_bad_tokens() {
    let w = world();
    let before = snapshot(&w);
    let a = Some(w.alice.as_str());

    let (s, body) = w.bg.http(
        "POST",
        "/v1/grants",
        a,
        "application/json",
        b"{\"role\": \"prod-db-admin\", ".to_vec(),
    );
    assert_eq!(s, 400, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON body"),
        "{body}"
    );
    assert!(
        e["error"]["help"]
            .as_str()
            .unwrap()
            .contains("JSON object like"),
        "{body}"
    );

    let (s, body) = w.bg.http(
        "POST",
        "/v1/grants",
        a,
        "application/json",
        br#"{"role":"prod-db-admin","reason":"x","incident":"INC-1","sudo":true}"#.to_vec(),
    );
    assert_eq!(s, 400, "unknown fields are refused: {body}");
    assert!(body.contains("unknown field `sudo`"), "{body}");

    let (s, body) = w.bg.http(
        "POST",
        "/v1/grants",
        a,
        "application/json",
        br#"{"role": 7}"#.to_vec(),
    );
    assert_eq!(s, 400, "{body}");

    let big = format!(
        r#"{{"role":"prod-db-admin","reason":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let (s, body) = w.bg.http(
        "POST",
        "/v1/grants",
        a,
        "application/json",
        big.into_bytes(),
    );
    assert_eq!(s, 413, "{body}");
    assert!(body.contains("larger than 1048576 bytes"), "{body}");

    let (s, body) = w.bg.http(
        "POST",
        "/v1/grants",
        None,
        "application/json",
        b"{}".to_vec(),
    );
    assert_eq!(s, 401, "{body}");
    assert!(body.contains("no API token was presented"), "{body}");

    let (s, body) =
        w.bg.http("GET", "/v1/nowhere", a, "application/json", vec![]);
    assert_eq!(s, 404, "{body}");
    assert!(body.contains("no such endpoint `/v1/nowhere`"));

    let (s, body) =
        w.bg.http("DELETE", "/v1/grants", a, "application/json", vec![]);
    assert_eq!(s, 405, "{body}");
    assert!(
        body.contains("`DELETE` is not allowed on `/v1/grants`"),
        "{body}"
    );
    let (s, body) = w.bg.http(
        "GET",
        "/v1/audit/tail?n=lots",
        Some(&w.bg.admin_token),
        "application/json",
        vec![],
    );
    assert_eq!(s, 400, "{body}");
    assert!(
        body.contains("invalid `n`: `lots` is not a count"),
        "{body}"
    );
    let (s, body) = w.bg.http(
        "POST",
        &format!(
            "/v1/grants/{}/cancel",
            "00000000-0000-4000-8000-000000000000"
        ),
        a,
        "application/json",
        br#"{"force": true}"#.to_vec(),
    );
    assert_eq!(
        s, 400,
        "unknown fields are refused on every endpoint: {body}"
    );

    // unknown, malformed, revoked and expired API tokens
    let r = w.bg.cli(
        "bgt_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &["grants", "list"],
    );
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains("API token `0123456789ab` is not valid"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("AAAAAAAA"),
        "the secret part is never echoed"
    );
    let r = w.bg.cli("hunter2", &["grants", "list"]);
    assert_eq!(r.code, 3);
    assert!(
        r.stderr.contains("not a breakglass token") && !r.stderr.contains("hunter2"),
        "{}",
        r.stderr
    );
    let r = w.bg.cli("", &["grants", "list"]);
    assert_eq!(r.code, 3);
    assert!(
        r.stderr.contains("`BREAKGLASS_TOKEN` is not set"),
        "{}",
        r.stderr
    );

    let t =
        w.bg.cli_json(&w.alice, &["tokens", "create", "--user", "alice"]);
    let (tid, tok) = (
        t["id"].as_str().unwrap().to_owned(),
        t["token"].as_str().unwrap().to_owned(),
    );
    assert_eq!(w.bg.cli(&tok, &["whoami"]).code, 0);
    w.bg.cli_json(&tok, &["tokens", "revoke", &tid]);
    let r = w.bg.cli(&w.bg.admin_token, &["tokens", "revoke", &tid]);
    assert_eq!(r.code, 6, "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("API token `{tid}` is already revoked")),
        "{}",
        r.stderr
    );
    // revoking a leaked token by pasting the whole token works, and the secret goes nowhere
    let leaked =
        w.bg.cli_json(&w.alice, &["tokens", "create", "--user", "alice"]);
    let leaked = leaked["token"].as_str().unwrap().to_owned();
    let r = w.bg.cli(
        &w.bg.admin_token,
        &["tokens", "revoke", &leaked, "--output", "json"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        w.bg.cli(&leaked, &["whoami"]).code,
        3,
        "the leaked token no longer works"
    );
    let secret = leaked.splitn(3, '_').nth(2).unwrap();
    // ... and a whole token typed into any other field (a grant id, a role, a user name, a
    // login name) is cut down to its id before it reaches the log or the audit log.
    for args in [
        vec!["grants", "show", leaked.as_str()],
        vec!["approve", leaked.as_str()],
        vec!["roles", "show", leaked.as_str()],
        vec![
            "request",
            leaked.as_str(),
            "--reason",
            "pasted into the wrong field",
        ],
        vec!["users", "disable", leaked.as_str()],
    ] {
        let r = w.bg.cli(&w.bg.admin_token, &args);
        assert_ne!(r.code, 0, "{args:?}: {r:?}");
    }
    let r = w.bg.cli_anonymous(&[
        "login",
        "--user",
        &leaked,
        "--password-file",
        &w.bg.secret_file("not-a-password").display().to_string(),
        "--no-save",
    ]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        !w.bg.logs().contains(secret),
        "the pasted secret reached the log"
    );
    let audit =
        w.bg.cli(
            &w.bg.admin_token,
            &["audit", "tail", "-n", "1000", "--output", "json"],
        )
        .stdout;
    assert!(
        !audit.contains(secret),
        "the pasted secret reached the audit log"
    );
    let r =
        w.bg.cli(&w.bg.admin_token, &["tokens", "revoke", "feedfacecafe"]);
    assert_eq!(r.code, 5, "{r:?}");
    assert!(
        r.stderr.contains("unknown API token `feedfacecafe`") && r.stderr.contains("tokens list"),
        "{}",
        r.stderr
    );
    let r = w.bg.cli(&tok, &["whoami"]);
    assert_eq!(r.code, 3);
    assert!(
        r.stderr.contains(&format!("API token `{tid}` was revoked")),
        "{}",
        r.stderr
    );

    let t = w.bg.cli_json(
        &w.alice,
        &["tokens", "create", "--user", "alice", "--ttl", "1s"],
    );
    let tok = t["token"].as_str().unwrap().to_owned();
    assert!(
        poll_until(DEADLINE, || w.bg.cli(&tok, &["whoami"]).code == 3),
        "token never expired"
    );
    let r = w.bg.cli(&tok, &["whoami"]);
    assert!(
        r.stderr.contains("has expired") && r.stderr.contains("help:"),
        "{}",
        r.stderr
    );

    let r = w.bg.cli(
        &w.alice,
        &["tokens", "create", "--user", "alice", "--ttl", "400d"],
    );
    assert_eq!(r.code, 6, "{r:?}");

    let after = snapshot(&w);
    assert_eq!(before.0, after.0, "no grant changed");
}

#[test]
fn an_unreachable_broker_is_a_clear_error() {
    let mut w = world();
    w.bg.kill9();
    let r = w.bg.cli(&w.alice, &["grants", "list"]);
    assert_eq!(r.code, 7, "{r:?}");
    assert!(
        r.stderr.contains("cannot reach the broker at"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("BREAKGLASS_URL"), "{}", r.stderr);
}

/// A database that cannot be written (here: another process holds SQLite's write lock, as a
/// stuck backup or a full disk would) is a clear, retryable error that changes nothing.
#[test]
fn a_database_that_cannot_be_written_is_a_clear_error_and_changes_nothing() {
    use sqlx::Connection as _;
    let w = world();
    let before = snapshot(&w);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!(
        "sqlite://{}",
        w.bg.data_dir().join("breakglass.db").display()
    );
    let mut conn = rt.block_on(sqlx::SqliteConnection::connect(&url)).unwrap();
    rt.block_on(sqlx::query("BEGIN EXCLUSIVE").execute(&mut conn))
        .unwrap();

    let r = w.bg.cli(
        &w.alice,
        &[
            "request",
            "prod-db-admin",
            "--reason",
            "db down",
            "--incident",
            "INC-1",
        ],
    );
    assert_eq!(r.code, 7, "{r:?}");
    assert!(
        r.stderr.contains("the database is unavailable (error id `"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("nothing was changed; retry shortly"),
        "{}",
        r.stderr
    );
    let id = r
        .stderr
        .split("error id `")
        .nth(1)
        .unwrap()
        .split('`')
        .next()
        .unwrap()
        .to_owned();
    // The log line is written before the answer, but read from the process's pipe a moment later.
    assert!(
        poll_until(DEADLINE, || w.bg.logs().contains(&id)),
        "the operator finds the details under the id"
    );

    rt.block_on(sqlx::query("ROLLBACK").execute(&mut conn))
        .unwrap();
    rt.block_on(conn.close()).unwrap();
    assert_eq!(
        snapshot(&w),
        before,
        "nothing changed while the database was unavailable"
    );
    let g = w.bg.cli_json(
        &w.alice,
        &[
            "request",
            "prod-db-admin",
            "--reason",
            "db down",
            "--incident",
            "INC-1",
        ],
    );
    assert_eq!(
        g["state"], "requested",
        "works again once the database is back"
    );
}

/// Invariant 2 end to end: when the audit record cannot be written, the change does not happen
/// and the caller gets an error.
#[test]
fn when_the_audit_log_cannot_be_written_nothing_changes() {
    use sqlx::Connection as _;
    let w = world();
    let id = active_grant(&w, "30m");
    let before = snapshot(&w);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!(
        "sqlite://{}",
        w.bg.data_dir().join("breakglass.db").display()
    );
    let mut conn = rt.block_on(sqlx::SqliteConnection::connect(&url)).unwrap();
    rt.block_on(
        sqlx::query("CREATE TRIGGER audit_broken BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit sink broken'); END")
            .execute(&mut conn),
    )
    .unwrap();

    let r = w.bg.cli(
        &w.alice,
        &[
            "request",
            "prod-db-admin",
            "--reason",
            "x",
            "--incident",
            "INC-1",
        ],
    );
    assert_eq!(r.code, 8, "{r:?}");
    assert!(
        r.stderr.contains("internal error (error id `"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("audit sink broken"),
        "no internals reach the client"
    );
    let r = w.bg.cli(&w.alice, &["revoke", &id, "--reason", "x"]);
    assert_eq!(r.code, 8, "{r:?}");
    assert!(
        w.bg.logs().contains("audit sink broken"),
        "the operator sees the cause in the log"
    );

    rt.block_on(sqlx::query("DROP TRIGGER audit_broken").execute(&mut conn))
        .unwrap();
    rt.block_on(conn.close()).unwrap();
    assert_eq!(
        snapshot(&w),
        before,
        "neither the request nor the revoke happened"
    );
    assert_eq!(state(&w, &id), "active");
}
