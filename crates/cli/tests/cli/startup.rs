//! Starting up: role files (strict parsing, reload on SIGHUP, audit of changes), the data
//! directory (refuse re-init, refuse a second broker, refuse an unwritable directory).

use std::process::Command;

use super::*;

fn run(args: &[&str]) -> breakglass_testkit::Run {
    breakglass_testkit::Run::of(Command::new(BIN).args(args))
}

#[test]
fn a_role_file_with_an_unknown_key_stops_the_start_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let roles = dir.path().join("roles");
    std::fs::create_dir(&roles).unwrap();
    std::fs::write(
        roles.join("bad.toml"),
        format!("{DB_ROLE}\nsuperuser = true\n"),
    )
    .unwrap();
    assert_eq!(run(&["init", "--data-dir", data.to_str().unwrap()]).code, 0);
    let r = run(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--roles",
        roles.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("bad.toml") && r.stderr.contains("unknown field `superuser`"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("help: fix the role file"), "{}", r.stderr);
}

#[test]
fn roles_reload_on_sighup_with_audit_and_a_bad_file_keeps_the_old_roles() {
    let w = world();
    let hash0 = w.bg.cli_json(&w.alice, &["roles", "show", "prod-db-admin"])["hash"]
        .as_str()
        .unwrap()
        .to_owned();

    w.bg.write_role(
        "prod-db-admin.toml",
        &DB_ROLE.replace("max_duration = \"1h\"", "max_duration = \"2h\""),
    );
    w.bg.signal("HUP");
    assert!(
        poll_until(DEADLINE, || w
            .bg
            .cli_json(&w.alice, &["roles", "show", "prod-db-admin"])["max_duration"]
            == "2h"),
        "reload never happened"
    );
    let audit =
        w.bg.cli_json(&w.bg.admin_token, &["audit", "tail", "-n", "100"]);
    let change = audit
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["type"] == "role.changed" && e["role"] == "prod-db-admin")
        .unwrap()
        .clone();
    assert_eq!(change["old_hash"], hash0.as_str());
    assert_ne!(change["new_hash"], hash0.as_str());
    assert_eq!(change["actor"], "system:roles");

    w.bg.write_role(
        "prod-db-admin.toml",
        &format!("{DB_ROLE}\nbackdoor = \"yes\"\n"),
    );
    w.bg.signal("HUP");
    assert!(
        poll_until(DEADLINE, || w.bg.logs().contains("roles reload failed")),
        "no error logged"
    );
    assert!(w.bg.logs().contains("unknown field `backdoor`"));
    assert_eq!(
        w.bg.cli_json(&w.alice, &["roles", "show", "prod-db-admin"])["max_duration"],
        "2h",
        "old roles stay in force"
    );

    std::fs::remove_file(w.bg.roles_dir().join("payments.toml")).unwrap();
    w.bg.write_role("prod-db-admin.toml", DB_ROLE);
    w.bg.signal("HUP");
    assert!(
        poll_until(DEADLINE, || w
            .bg
            .cli(&w.alice, &["roles", "show", "payments-readonly"])
            .code
            == 5),
        "removal not applied"
    );
    let audit =
        w.bg.cli_json(&w.bg.admin_token, &["audit", "tail", "-n", "100"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "role.changed"
                && e["role"] == "payments-readonly"
                && e.get("new_hash").is_none())
    );
}

#[test]
fn init_refuses_an_initialised_directory_and_a_second_broker_is_refused() {
    let w = world();
    let data = w.bg.data_dir();
    let r = run(&["init", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(r.code, 6, "{r:?}");
    assert!(r.stderr.contains("is already initialised"), "{}", r.stderr);
    assert!(
        r.stderr.contains("help: run `breakglass serve --data-dir"),
        "{}",
        r.stderr
    );
    let r = run(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("is in use by another breakglass process"),
        "{}",
        r.stderr
    );
    // the running broker is unaffected
    assert_eq!(w.bg.cli(&w.alice, &["whoami"]).code, 0);
}

#[test]
fn an_unwritable_data_directory_is_a_clear_error() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let locked = dir.path().join("ro");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    let target = locked.join("data");
    // A copy of the binary that `nobody` can run wherever the checkout lives.
    let bin = dir.path().join("breakglass");
    std::fs::copy(BIN, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();

    // Permission bits do not bind root, so as root the broker runs as `nobody`.
    let as_user = |args: &[&str]| {
        let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        let out = if root {
            Command::new("runuser")
                .current_dir(dir.path())
                .args(["-u", "nobody", "--"])
                .arg(&bin)
                .args(args)
                .output()
                .unwrap()
        } else {
            Command::new(BIN).args(args).output().unwrap()
        };
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = as_user(&["init", "--data-dir", target.to_str().unwrap()]);
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains(&format!(
            "data directory `{}` is not writable: permission denied",
            target.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("help: give the broker's user write access"),
        "{err}"
    );
    assert!(!target.exists(), "nothing was created");

    let (code, err) = as_user(&[
        "serve",
        "--data-dir",
        target.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not writable: permission denied"), "{err}");
}

#[test]
fn a_lost_admin_token_is_recovered_offline_from_the_data_directory() {
    let mut w = world();
    let data = w.bg.data_dir();
    let d = data.to_str().unwrap();
    let r = run(&["recover-admin", "--data-dir", d]);
    assert_eq!(r.code, 6, "refused while the broker runs: {r:?}");
    assert!(
        r.stderr.contains("is in use by another breakglass process"),
        "{}",
        r.stderr
    );
    w.bg.kill9();
    let r = run(&["recover-admin", "--data-dir", d, "--user", "alice"]);
    assert_eq!(r.code, 6, "{r:?}");
    assert!(
        r.stderr
            .contains("user `alice` is not an enabled member of `admins`"),
        "{}",
        r.stderr
    );
    let r = run(&[
        "recover-admin",
        "--data-dir",
        d,
        "--ttl",
        "2h",
        "--output",
        "json",
    ]);
    let token = r.ok_json()["token"].as_str().unwrap().to_owned();
    w.bg.restart();
    let me = w.bg.cli_json(&token, &["whoami"]);
    assert_eq!(me["name"], "admin");
    let audit = w.bg.cli_json(&token, &["audit", "tail", "-n", "50"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "token.created" && e["actor"] == "system:recovery")
    );
}

#[test]
fn init_refuses_a_directory_that_is_not_empty() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let r = run(&["init", "--data-dir", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, 6, "{r:?}");
    assert!(r.stderr.contains("exists and is not empty"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing was added"
    );
}
