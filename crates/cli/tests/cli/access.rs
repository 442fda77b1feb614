//! Issue 7 end to end: local sign-in (password, TOTP, recovery codes, lockout), step-up, scoped
//! service tokens, Cedar policy (a custom forbid, a broken file), and emergency self-activation
//! with nobody to approve. The real binary, nothing mocked.

use std::path::Path;

use breakglass_testkit::{Broker, DEADLINE, poll_until};
use serde_json::Value;

use super::{BIN, DB_ROLE};

const EMERGENCY_ROLE: &str = r#"
id = "db-emergency"
title = "Emergency DBA when nobody can approve"
owner = "group:dba-leads"
requesters = ["group:sre"]
default_duration = "30m"
max_duration = "1h"
[approval]
quorum = 1
approvers = ["group:sre-leads"]
[approval.emergency]
allowed = true
max_duration = "15m"
review_within = "3s"
[target]
kind = "token"
audience = "prod-db"
scope = ["db:admin"]
"#;

const AUTOMATION_ROLE: &str = r#"
id = "rotate-secrets"
title = "Rotate a leaked secret"
owner = "group:security"
requesters = ["group:automation"]
default_duration = "10m"
max_duration = "30m"
[approval]
quorum = 1
approvers = ["group:security"]
[step_up]
exempt_services = true
[target]
kind = "token"
audience = "vault"
scope = ["secrets:rotate"]
"#;

fn audit(bg: &Broker) -> Vec<Value> {
    bg.cli_json(&bg.admin_token, &["audit", "tail", "-n", "1000"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn login(bg: &Broker, user: &str, password: &str, code: Option<&str>) -> breakglass_testkit::Run {
    let f = bg.secret_file(password);
    let path = f.display().to_string();
    let mut args = vec![
        "login",
        "--user",
        user,
        "--password-file",
        &path,
        "--no-save",
        "--output",
        "json",
    ];
    if let Some(c) = code {
        args.extend(["--totp", c]);
    }
    bg.cli_anonymous(&args)
}

#[test]
fn sign_in_needs_password_and_code_locks_after_failures_and_keeps_secrets_out() {
    let bg = Broker::start(Path::new(BIN), &[("db.toml", DB_ROLE)]);
    bg.user("alice", &["sre"]);
    let acc = bg.account("alice");
    // An administrator's one-time password for a new person is shown once, in the answer only.
    let dave = bg.cli_json(&bg.admin_token, &["users", "add", "dave", "--group", "sre"]);
    let initial = dave["initial_password"].as_str().unwrap().to_owned();
    assert!(initial.len() >= 20, "{dave}");

    // Password alone is not enough once an authenticator is enrolled.
    let r = login(&bg, "alice", &acc.password, None);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains("needs a code from its authenticator app"),
        "{}",
        r.stderr
    );

    // Password and code: a session, stepped up.
    let code = bg.fresh_code("alice");
    let ok = login(&bg, "alice", &acc.password, Some(&code)).ok_json();
    assert_eq!(ok["method"], "password+totp");
    assert!(ok["stepped_up_at"].is_string());
    let session = ok["token"].as_str().unwrap().to_owned();
    let me = bg.cli_json(&session, &["whoami"]);
    assert_eq!(me["token_kind"], "session");

    // The same code again is refused: a used code never works twice.
    let r = login(&bg, "alice", &acc.password, Some(&code));
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("it was already used"), "{}", r.stderr);

    // Wrong guesses (the replayed code above was the first): five are free, the sixth locks.
    for _ in 0..4 {
        let r = login(&bg, "alice", "wrong-password-guess", None);
        assert_eq!(r.code, 3, "{r:?}");
        assert!(
            r.stderr.contains("wrong user name or password"),
            "{}",
            r.stderr
        );
    }
    // From the sixth failure on, each locks the account for longer (1 s, 2 s, 4 s ...). Keep
    // guessing until a guess is refused as locked; right then even the right password is refused
    // unchecked (a code that would be valid is sent, and is not used up).
    let now_code = || {
        let t = std::time::UNIX_EPOCH.elapsed().unwrap().as_secs();
        breakglass_testkit::totp_code(&acc.totp, t)
    };
    let mut refused = None;
    assert!(
        poll_until(DEADLINE, || {
            if login(&bg, "alice", "wrong-password-guess", None).code != 6 {
                return false;
            }
            let r = login(&bg, "alice", &acc.password, Some(&now_code()));
            let locked = r.code == 6;
            refused = Some(r);
            locked
        }),
        "the account never locked: {refused:?}"
    );
    let r = refused.unwrap();
    assert!(r.stderr.contains("is locked until"), "{}", r.stderr);
    // The lock ends on its own.
    assert!(
        poll_until(DEADLINE, || login(
            &bg,
            "alice",
            &acc.password,
            Some(&bg.fresh_code("alice"))
        )
        .code
            == 0),
        "the lock never ended"
    );

    // An unknown user fails the same way as a wrong password.
    let r = login(&bg, "nobody", "whatever-password", None);
    assert_eq!(r.code, 3);
    assert!(
        r.stderr.contains("wrong user name or password"),
        "{}",
        r.stderr
    );

    let events = audit(&bg);
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(
        types.iter().filter(|t| **t == "auth.failed").count() >= 7,
        "{types:?}"
    );
    let locked = events.iter().find(|e| e["type"] == "auth.locked").unwrap();
    // Failures count per account and source address: the lock is alice's, from this address.
    assert_eq!(locked["subject"], "account alice from 127.0.0.1");
    assert!(types.contains(&"auth.login"));
    assert!(types.contains(&"user.totp_enrolled"));
    assert!(types.contains(&"user.password_set"));

    // No password, TOTP secret or code anywhere in the log or the audit trail.
    let everything = format!("{}\n{}", serde_json::to_string(&events).unwrap(), bg.logs());
    for secret in [
        acc.password.as_str(),
        acc.totp.as_str(),
        code.as_str(),
        "wrong-password-guess",
        session.as_str(),
        initial.as_str(),
    ] {
        assert!(!everything.contains(secret), "a secret leaked: {secret}");
    }
}

#[test]
fn step_up_is_needed_within_its_window_and_recovery_codes_work_once() {
    let mut bg = Broker::init(Path::new(BIN), &[("db.toml", DB_ROLE)]);
    bg.set_env("BREAKGLASS_STEP_UP_WINDOW", "3s");
    bg.restart();
    // The kit's admin is stepped up at enrolment; the window is short here, so step up again
    // before each admin change.
    let admin_code = bg.fresh_code("admin");
    bg.cli_json(&bg.admin_token, &["step-up", "--totp", &admin_code]);
    let alice = bg.user("alice", &["sre"]);
    let admin_code = bg.fresh_code("admin");
    bg.cli_json(&bg.admin_token, &["step-up", "--totp", &admin_code]);
    let bob = bg.user("bob", &["sre-leads"]);
    let g = bg.cli_json(
        &alice,
        &[
            "request",
            "prod-db-admin",
            "--reason",
            "db down",
            "--incident",
            "INC-7",
        ],
    );
    let id = g["id"].as_str().unwrap().to_owned();

    // Bob's step-up (from enrolment) lapses, seen on a harmless command that needs one (a token
    // for himself); approving is then refused with how to step up.
    assert!(
        poll_until(DEADLINE, || {
            let r = bg.cli(&bob, &["tokens", "create", "--user", "bob", "--ttl", "1m"]);
            r.code == 3
                && r.stderr
                    .contains("needs a second factor verified within the last 3s")
        }),
        "a stale step-up was never refused"
    );
    let r = bg.cli(&bob, &["approve", &id]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains("`approve` needs a second factor"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("breakglass step-up"), "{}", r.stderr);
    assert!(r.stderr.contains("--totp CODE"), "{}", r.stderr);
    assert_eq!(
        bg.cli_json(&bg.admin_token, &["grants", "show", &id])["state"],
        "requested"
    );

    // `--totp` steps up and retries in one go.
    let code = bg.fresh_code("bob");
    let g = bg.cli_json(&bob, &["approve", &id, "--totp", &code]);
    assert_eq!(g["state"], "active");
    // The same code cannot step up again.
    let r = bg.cli(&bob, &["step-up", "--totp", &code]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("already used"), "{}", r.stderr);

    // A recovery code works in place of the authenticator, once.
    let recovery = {
        let c = bg.fresh_code("admin");
        bg.cli_json(&bg.admin_token, &["step-up", "--totp", &c]);
        bg.cli_json(&bg.admin_token, &["users", "reset-totp", "alice"]);
        // Alice's sessions ended with the reset; she signs in with her password and enrols anew.
        let acc = bg.account("alice");
        let s = login(&bg, "alice", &acc.password, None).ok_json();
        let s = s["token"].as_str().unwrap().to_owned();
        let e = bg.cli_json(&s, &["totp", "enroll"]);
        let secret = e["secret"].as_str().unwrap().to_owned();
        let now = std::time::UNIX_EPOCH.elapsed().unwrap().as_secs();
        let c = breakglass_testkit::totp_code(&secret, now);
        let done = bg.cli_json(&s, &["totp", "confirm", &c]);
        let codes = done["recovery_codes"].as_array().unwrap().clone();
        assert_eq!(codes.len(), 10);
        (s, codes[0].as_str().unwrap().to_owned())
    };
    let (session, rc) = recovery;
    assert_eq!(
        bg.cli(&alice, &["whoami"]).code,
        3,
        "reset ended the old session"
    );
    assert!(
        poll_until(DEADLINE, || bg
            .cli(
                &session,
                &["tokens", "create", "--user", "alice", "--ttl", "1m"]
            )
            .code
            == 3),
        "alice's step-up never lapsed"
    );
    let v = bg.cli_json(&session, &["credential", &id, "--totp", &rc]);
    assert!(v["credential"].is_string());
    let r = bg.cli(&session, &["step-up", "--totp", &rc]);
    assert_eq!(r.code, 3, "a recovery code works once: {r:?}");
    let events = audit(&bg);
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "user.recovery_code_used" && e["remaining"] == 9)
    );
    let everything = format!("{}\n{}", serde_json::to_string(&events).unwrap(), bg.logs());
    assert!(!everything.contains(&rc) && !everything.contains(&code));
}

#[test]
fn service_tokens_stay_within_scopes_and_expiry() {
    let bg = Broker::start(
        Path::new(BIN),
        &[("db.toml", DB_ROLE), ("rotate.toml", AUTOMATION_ROLE)],
    );
    let sec = bg.user("sam", &["security"]);
    let bot = bg.service("rotator", &["automation"], "request,credential,read", "1h");

    // A scoped token without `admin` cannot administer, nor can it without step-up anyway.
    let r = bg.cli(&bot, &["users", "add", "eve"]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr
            .contains("may be used for request, credential, read, not `admin`"),
        "{}",
        r.stderr
    );
    // Tokens for a service need scopes; unknown scopes are refused.
    let r = bg.cli(&bg.admin_token, &["tokens", "create", "--user", "rotator"]);
    assert_eq!(r.code, 6, "{r:?}");
    let r = bg.cli(
        &bg.admin_token,
        &["tokens", "create", "--user", "rotator", "--scopes", "nuke"],
    );
    assert_eq!(r.code, 6, "{r:?}");
    assert!(r.stderr.contains("unknown scope `nuke`"), "{}", r.stderr);
    // An admin cannot mint a token for a person (that would let them act as the person).
    let r = bg.cli(&bg.admin_token, &["tokens", "create", "--user", "sam"]);
    assert_eq!(r.code, 4, "{r:?}");

    // The automation requests its role, a person approves, the service collects the credential
    // (its role exempts services from step-up).
    let g = bg.cli_json(
        &bot,
        &[
            "request",
            "rotate-secrets",
            "--reason",
            "key leaked in a log",
        ],
    );
    let id = g["id"].as_str().unwrap().to_owned();
    bg.cli_json(&sec, &["approve", &id]);
    let c = bg.cli_json(&bot, &["credential", &id]);
    assert!(c["credential"].is_string());
    // Outside its scopes: it cannot approve or revoke, even its own grant.
    let r = bg.cli(&bot, &["revoke", &id, "--reason", "x"]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("not `revoke`"), "{}", r.stderr);
    // A role without the exemption: a service cannot collect what it cannot step up for.
    let r = bg.cli(
        &bot,
        &[
            "request",
            "prod-db-admin",
            "--reason",
            "x",
            "--incident",
            "INC-1",
        ],
    );
    assert_eq!(r.code, 4, "not a requester of that role: {r:?}");

    // A token past its expiry is refused.
    let short = bg.cli_json(
        &bg.admin_token,
        &[
            "tokens", "create", "--user", "rotator", "--scopes", "read", "--ttl", "1s",
        ],
    );
    let short = short["token"].as_str().unwrap().to_owned();
    assert!(
        poll_until(DEADLINE, || bg.cli(&short, &["whoami"]).code == 3),
        "the token outlived its expiry"
    );
    assert!(bg.cli(&short, &["whoami"]).stderr.contains("has expired"));
}

#[test]
fn a_custom_forbid_overrides_the_role_file_and_a_broken_policy_keeps_the_old_one() {
    let bg = Broker::start(Path::new(BIN), &[("db.toml", DB_ROLE)]);
    let alice = bg.user("alice", &["sre"]);
    let bob = bg.user("bob", &["sre-leads"]);
    let carol = bg.user("carol", &["sre-leads"]);
    let policies = bg.data_dir().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("no-carol.cedar"),
        "// Carol is on leave.\nforbid(principal == Breakglass::Principal::\"carol\", action == Breakglass::Action::\"approve\", resource == Breakglass::Role::\"prod-db-admin\");\n",
    )
    .unwrap();
    bg.signal("HUP");
    let request = || {
        bg.cli_json(
            &alice,
            &[
                "request",
                "prod-db-admin",
                "--reason",
                "db down",
                "--incident",
                "INC-9",
            ],
        )["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let id = request();
    assert!(
        poll_until(DEADLINE, || {
            let r = bg.cli(&carol, &["approve", &id]);
            r.code == 4
                && r.stderr
                    .contains("policy does not allow `carol` to `approve`")
        }),
        "the forbid never took effect"
    );
    let x = bg.cli_json(
        &bg.admin_token,
        &[
            "policy",
            "explain",
            "--principal",
            "carol",
            "--action",
            "approve",
            "--role",
            "prod-db-admin",
        ],
    );
    assert_eq!(x["decision"], "deny");
    assert!(x.to_string().contains("no-carol.cedar"), "{x}");
    let x = bg.cli_json(
        &bg.admin_token,
        &[
            "policy",
            "explain",
            "--principal",
            "bob",
            "--action",
            "approve",
            "--role",
            "prod-db-admin",
        ],
    );
    assert_eq!(x["decision"], "allow");

    // A broken file: `policy check` names file and line, the reload keeps the policy in force.
    std::fs::write(
        policies.join("broken.cedar"),
        "permit(principal, action, resource);\nforbid(principal action == Breakglass::Action::\"approve\", resource);\n",
    )
    .unwrap();
    let check = breakglass_testkit::Run::of(
        std::process::Command::new(BIN)
            .args(["policy", "check", "--data-dir"])
            .arg(bg.data_dir()),
    );
    assert_eq!(check.code, 6, "{check:?}");
    assert!(check.stderr.contains("broken.cedar:2"), "{}", check.stderr);
    bg.signal("HUP");
    assert!(
        poll_until(DEADLINE, || bg.logs().contains("broken.cedar:2")),
        "the reload did not report the broken file"
    );
    let r = bg.cli(&carol, &["approve", &id]);
    assert_eq!(
        r.code, 4,
        "the old policy (with the forbid) is still in force: {r:?}"
    );
    let g = bg.cli_json(&bob, &["approve", &id]);
    assert_eq!(g["state"], "active");
    let types: Vec<String> = audit(&bg)
        .iter()
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .collect();
    assert!(types.iter().any(|t| t == "policy.changed"));
    assert!(types.iter().any(|t| t == "auth.denied"));
}

#[test]
fn emergency_self_activation_works_with_no_approver_and_owes_a_review() {
    let bg = Broker::start(Path::new(BIN), &[("db.toml", EMERGENCY_ROLE)]);
    let alice = bg.user("alice", &["sre"]);
    // Nobody in `sre-leads` exists: no approver can be reached.
    let r = bg.cli(
        &alice,
        &[
            "request",
            "db-emergency",
            "--reason",
            "db down, no approver",
            "--emergency",
            "--duration",
            "1h",
        ],
    );
    assert_eq!(r.code, 6, "over the emergency cap: {r:?}");
    assert!(r.stderr.contains("15m"), "{}", r.stderr);
    let g = bg.cli_json(
        &alice,
        &[
            "request",
            "db-emergency",
            "--reason",
            "db down, no approver",
            "--emergency",
        ],
    );
    assert_eq!(g["state"], "active", "{g}");
    assert_eq!(g["emergency"], true);
    assert!(g["review_due"].is_string());
    let id = g["id"].as_str().unwrap().to_owned();
    let c = bg.cli_json(&alice, &["credential", &id]);
    assert!(c["credential"].is_string());

    let events: Vec<Value> = audit(&bg)
        .into_iter()
        .filter(|e| e["grant"] == id.as_str())
        .collect();
    assert!(events.iter().all(|e| e["emergency"] == true), "{events:?}");
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(types.contains(&"grant.emergency_activated"), "{types:?}");
    assert!(!types.contains(&"grant.approved"), "{types:?}");

    // The review is owed within 3 s; once overdue, a second emergency use is refused.
    assert!(
        poll_until(DEADLINE, || {
            let r = bg.cli(
                &alice,
                &[
                    "request",
                    "db-emergency",
                    "--reason",
                    "again",
                    "--emergency",
                ],
            );
            r.code == 4 && r.stderr.contains("has owed a review since")
        }),
        "a second emergency use was not refused while the review is overdue"
    );
    // The normal path still works.
    let g = bg.cli_json(
        &alice,
        &["request", "db-emergency", "--reason", "normal path"],
    );
    assert_eq!(g["state"], "requested");
}

/// Nobody can lock the real person out of the emergency path: another address sends 200 wrong
/// passwords for bob, and from his own address bob still signs in, steps up and approves.
#[test]
fn two_hundred_wrong_passwords_from_another_address_do_not_stop_bob() {
    let bg = Broker::start(Path::new(BIN), &[("db.toml", DB_ROLE)]);
    let alice = bg.user("alice", &["sre"]);
    bg.user("bob", &["sre-leads"]);
    let acc = bg.account("bob");
    let attacker: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let guess =
        serde_json::json!({ "user": "bob", "password": "not-bobs-password", "code": "000000" })
            .to_string()
            .into_bytes();
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..200 {
        let (status, _) = bg.http_from(attacker, "POST", "/v1/login", None, guess.clone());
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        [401, 429],
        "{statuses:?}"
    );
    let g = bg.cli_json(
        &alice,
        &[
            "request",
            "prod-db-admin",
            "--reason",
            "primary is down",
            "--incident",
            "INC-7",
        ],
    );
    let id = g["id"].as_str().unwrap();
    // bob, from 127.0.0.1: sign in (password and code), step up, approve.
    let pw = bg.secret_file(&acc.password);
    let code = bg.fresh_code("bob");
    let r = bg.cli_anonymous(&[
        "login",
        "--user",
        "bob",
        "--password-file",
        &pw.display().to_string(),
        "--totp",
        &code,
        "--no-save",
        "--output",
        "json",
    ]);
    let bob = r.ok_json()["token"].as_str().unwrap().to_owned();
    let code = bg.fresh_code("bob");
    let stepped = bg.cli_json(&bob, &["step-up", "--totp", &code]);
    assert!(stepped["stepped_up_at"].is_string(), "{stepped}");
    let approved = bg.cli_json(&bob, &["approve", id]);
    assert_eq!(approved["state"], "active", "{approved}");
    // The attack is on record: failures from 127.0.0.2 only, and its refusals counted on its lock.
    let events = audit(&bg);
    let failed: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "auth.failed")
        .collect();
    assert!(!failed.is_empty());
    assert!(
        failed.iter().all(|e| e["source"] == "127.0.0.2"),
        "{failed:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "auth.locked" && e["subject"] == "account bob from 127.0.0.2")
    );
}
