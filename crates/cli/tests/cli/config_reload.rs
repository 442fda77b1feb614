//! The config file reloads on SIGHUP with the roles: a change takes effect at once and is audited
//! as `config.changed`; a file that does not parse, or one that would drop a channel a role still
//! names, keeps the one in force and is logged with the file, the line and the reason.

use breakglass_testkit::sinks::SyslogTcpSink;
use breakglass_testkit::webhook::WebhookReceiver;
use sha2::Digest as _;

use super::alerts::{AlertWorld, HMAC, alert_world, role};
use super::*;

fn config_changes(w: &AlertWorld) -> Vec<Value> {
    w.bg.cli_json(&w.bg.admin_token, &["audit", "tail", "-n", "1000"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "config.changed")
        .cloned()
        .collect()
}

/// alice requests svc-admin and bob approves: an activation, which `always` channels hear.
fn activate(w: &AlertWorld, reason: &str) -> String {
    let g =
        w.bg.cli_json(&w.alice, &["request", "svc-admin", "--reason", reason]);
    let id = g["id"].as_str().unwrap().to_owned();
    w.bg.cli_json(&w.bob, &["approve", &id]);
    id
}

fn hears_activation(siem: &SyslogTcpSink, id: &str) -> bool {
    siem.frames()
        .iter()
        .any(|f| f.contains("grant.activated") && f.contains(id))
}

#[test]
fn the_config_file_reloads_on_sighup_and_a_bad_one_keeps_the_one_in_force() {
    let hook = WebhookReceiver::start(Some(HMAC.as_bytes()));
    let oncall = format!(
        "[channels.oncall]\nkind = \"webhook\"\nurl = \"{}\"\nhmac_key = {{ env = \"BG_E2E_HMAC\" }}\n",
        hook.url("/a")
    );
    let w = alert_world(
        &oncall,
        &[("svc.toml", &role("svc-admin", "30m", &["oncall"]))],
    );
    let path = w.bg.data_dir().join("breakglass.toml");
    assert_eq!(config_changes(&w).len(), 1);

    // A new channel, told of everything high-severity: in force once the broker hears SIGHUP.
    let siem = SyslogTcpSink::start();
    let second = format!(
        "[alerts]\nalways = [\"siem\"]\n\n{oncall}\n[channels.siem]\nkind = \"syslog\"\naddress = \"{}\"\n",
        siem.addr()
    );
    std::fs::write(&path, &second).unwrap();
    w.bg.signal("HUP");
    assert!(
        poll_until(DEADLINE, || config_changes(&w).len() == 2),
        "{}",
        w.bg.logs()
    );
    let changes = config_changes(&w);
    assert_eq!(changes[1]["actor"], "system:config");
    assert_eq!(changes[1]["file"], path.display().to_string());
    assert_eq!(changes[1]["old_hash"], changes[0]["new_hash"]);
    assert_eq!(
        changes[1]["new_hash"],
        sha2::Sha256::digest(second.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    // The new channel hears of the change itself, and of the next activation.
    assert!(
        poll_until(DEADLINE, || siem
            .frames()
            .iter()
            .any(|f| f.contains("config.changed"))),
        "{:?}",
        siem.frames()
    );
    let first = activate(&w, "db down");
    assert!(
        poll_until(DEADLINE, || hears_activation(&siem, &first)),
        "{:?}",
        siem.frames()
    );

    // A file that does not parse: logged with the file, the line and the reason, and kept.
    let broken = format!("{second}\n[channels.pager]\nkind =\n");
    let line = broken.lines().position(|l| l == "kind =").unwrap() + 1;
    std::fs::write(&path, &broken).unwrap();
    w.bg.signal("HUP");
    assert!(
        poll_until(DEADLINE, || w
            .bg
            .logs()
            .contains("config file reload failed")),
        "{}",
        w.bg.logs()
    );
    let logs = w.bg.logs();
    let failure = logs
        .lines()
        .find(|l| l.contains("config file reload failed"))
        .unwrap();
    assert!(
        failure.contains(&path.display().to_string()) && failure.contains(&format!("line {line},")),
        "{failure}"
    );
    let second_grant = activate(&w, "still down");
    assert!(
        poll_until(DEADLINE, || hears_activation(&siem, &second_grant)),
        "the config in force stays in force: {:?}",
        siem.frames()
    );

    // A file that drops the channel the role names: refused, naming the role and the channel.
    std::fs::write(
        &path,
        format!(
            "[alerts]\nalways = [\"siem\"]\n[channels.siem]\nkind = \"syslog\"\naddress = \"{}\"\n",
            siem.addr()
        ),
    )
    .unwrap();
    w.bg.signal("HUP");
    assert!(
        poll_until(DEADLINE, || w
            .bg
            .logs()
            .matches("config file reload failed")
            .count()
            == 2),
        "{}",
        w.bg.logs()
    );
    let logs = w.bg.logs();
    let refusal = logs
        .lines()
        .filter(|l| l.contains("config file reload failed"))
        .nth(1)
        .unwrap();
    assert!(
        refusal.contains("role `svc-admin`") && refusal.contains("channel `oncall`"),
        "{refusal}"
    );
    assert_eq!(
        config_changes(&w).len(),
        2,
        "a refused file is not recorded"
    );
    // The role's own channel still hears its activations.
    let third = activate(&w, "third time");
    assert!(
        poll_until(DEADLINE, || hook
            .delivered()
            .iter()
            .any(|r| r.body["event"] == "grant.activated"
                && r.body["fields"]["grant"] == third.as_str())),
        "the dropped channel is still in force"
    );
    assert!(!logs.contains(HMAC), "no secret in the logs");
}
