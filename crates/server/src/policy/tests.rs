use std::collections::BTreeSet;
use std::path::Path;

use breakglass_core::{Principal, PrincipalKind, Role, Timestamp};

use super::*;

const DB: &str = r#"
id = "db"
title = "DB"
owner = "group:dba"
requesters = ["group:sre", "user:dave"]
default_duration = "30m"
max_duration = "1h"
[approval]
quorum = 1
approvers = ["group:leads"]
[target]
kind = "token"
audience = "x"
scope = ["y"]
"#;

fn role() -> Role {
    Role::parse("db.toml", DB).unwrap()
}

fn principal(name: &str, kind: PrincipalKind, groups: &[&str]) -> Principal {
    Principal {
        name: name.parse().unwrap(),
        kind,
        groups: groups
            .iter()
            .map(|g| g.parse().unwrap())
            .collect::<BTreeSet<_>>(),
        disabled: false,
        created_at: Timestamp::from_unix_millis(0),
    }
}

fn human(name: &str, groups: &[&str]) -> Principal {
    principal(name, PrincipalKind::Human, groups)
}

/// Policies for the `db` role plus the given custom files, written to `<tmp>/policies`.
fn build_with(
    emergency_allowed: bool,
    files: &[(&str, &str)],
) -> (tempfile::TempDir, Result<Policies, PolicyError>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("policies");
    std::fs::create_dir(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let role = role();
    let built = Policies::build(
        [RoleFacts {
            role: &role,
            emergency_allowed,
        }],
        Some(&dir),
    );
    (tmp, built)
}

fn policies(files: &[(&str, &str)]) -> Policies {
    build_with(false, files).1.unwrap()
}

fn error(files: &[(&str, &str)]) -> PolicyError {
    build_with(false, files).1.unwrap_err()
}

fn allowed(p: &Policies, who: &Principal, action: Action, role: Option<&str>, own: bool) -> bool {
    p.is_allowed(&Query {
        principal: who,
        action,
        role,
        own,
    })
}

fn explain(p: &Policies, who: &Principal, action: Action, role: Option<&str>) -> Explanation {
    p.explain(&Query {
        principal: who,
        action,
        role,
        own: false,
    })
}

#[test]
fn actions_round_trip_through_their_names() {
    for a in Action::ALL {
        assert_eq!(Action::parse(a.as_str()), Some(a));
        assert_eq!(Action::ALL.get(a.index()), Some(&a));
    }
    assert_eq!(Action::parse("nuke"), None);
}

#[test]
fn policies_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Policies>();
}

#[test]
fn requesters_may_request_and_others_may_not() {
    let p = policies(&[]);
    let alice = human("alice", &["sre"]);
    let dave = human("dave", &[]);
    let bob = human("bob", &["leads"]);
    let erin = human("erin", &["dba"]);
    assert!(allowed(&p, &alice, Action::Request, Some("db"), false));
    assert!(allowed(&p, &dave, Action::Request, Some("db"), false));
    assert!(!allowed(&p, &bob, Action::Request, Some("db"), false));
    assert!(!allowed(&p, &erin, Action::Request, Some("db"), false));
    assert!(!allowed(&p, &alice, Action::Request, Some("web"), false));
    // Nobody approves their own way in, and requesters read but do not revoke others' grants.
    assert!(!allowed(&p, &alice, Action::Approve, Some("db"), false));
    assert!(!allowed(&p, &alice, Action::Revoke, Some("db"), false));
    assert!(allowed(&p, &alice, Action::Read, Some("db"), false));
}

#[test]
fn approvers_approve_revoke_and_review_and_the_owner_reviews() {
    let p = policies(&[]);
    let bob = human("bob", &["leads"]);
    let erin = human("erin", &["dba"]);
    for action in [
        Action::Approve,
        Action::Revoke,
        Action::Review,
        Action::Read,
    ] {
        assert!(allowed(&p, &bob, action, Some("db"), false), "{action:?}");
        assert!(!allowed(&p, &bob, action, Some("web"), false), "{action:?}");
    }
    assert!(!allowed(&p, &bob, Action::Request, Some("db"), false));
    assert!(allowed(&p, &erin, Action::Review, Some("db"), false));
    assert!(allowed(&p, &erin, Action::Read, Some("db"), false));
    assert!(!allowed(&p, &erin, Action::Approve, Some("db"), false));
}

#[test]
fn admins_administer_but_do_not_request_approve_or_review() {
    let p = policies(&[]);
    let root = human("root", &["admins"]);
    assert!(allowed(&p, &root, Action::Administer, None, false));
    assert!(allowed(&p, &root, Action::ReadAudit, None, false));
    assert!(allowed(&p, &root, Action::Read, Some("db"), false));
    assert!(allowed(&p, &root, Action::Revoke, Some("db"), false));
    for action in [
        Action::Request,
        Action::Emergency,
        Action::Approve,
        Action::Review,
    ] {
        assert!(!allowed(&p, &root, action, Some("db"), false), "{action:?}");
    }
}

#[test]
fn auditors_read_everything_and_change_nothing() {
    let p = policies(&[]);
    let audrey = human("audrey", &["auditors"]);
    assert!(allowed(&p, &audrey, Action::ReadAudit, None, false));
    assert!(allowed(&p, &audrey, Action::Read, Some("db"), false));
    assert!(!allowed(&p, &audrey, Action::Administer, None, false));
    assert!(!allowed(&p, &audrey, Action::Revoke, Some("db"), false));
    assert!(!allowed(&p, &audrey, Action::Approve, Some("db"), false));
}

#[test]
fn a_service_in_admins_still_cannot_administer() {
    let p = policies(&[]);
    let bot = principal("deploy-bot", PrincipalKind::Service, &["admins"]);
    assert!(!allowed(&p, &bot, Action::Administer, None, false));
    assert!(allowed(&p, &bot, Action::ReadAudit, None, false));
    let why = explain(&p, &bot, Action::Administer, None);
    assert!(!why.allowed);
    let ids: Vec<&str> = why.reasons.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["builtin:no-service-administer"]);
    assert_eq!(why.reasons[0].effect, "forbid");
    assert_eq!(why.reasons[0].source, "built-in");
}

#[test]
fn anyone_may_revoke_and_read_their_own_grant() {
    let p = policies(&[]);
    let erin = human("erin", &[]);
    assert!(allowed(&p, &erin, Action::Revoke, Some("db"), true));
    assert!(allowed(&p, &erin, Action::Read, Some("db"), true));
    assert!(!allowed(&p, &erin, Action::Revoke, Some("db"), false));
    assert!(!allowed(&p, &erin, Action::Read, Some("db"), false));
    // `own` opens nothing else.
    assert!(!allowed(&p, &erin, Action::Approve, Some("db"), true));
    assert!(!allowed(&p, &erin, Action::Review, Some("db"), true));
}

#[test]
fn emergency_is_permitted_only_when_the_role_allows_it() {
    let alice = human("alice", &["sre"]);
    let bob = human("bob", &["leads"]);
    let off = build_with(false, &[]).1.unwrap();
    assert!(!allowed(&off, &alice, Action::Emergency, Some("db"), false));
    assert!(!off.generated().contains("emergency"));
    let on = build_with(true, &[]).1.unwrap();
    assert!(allowed(&on, &alice, Action::Emergency, Some("db"), false));
    assert!(!allowed(&on, &bob, Action::Emergency, Some("db"), false));
    assert!(
        on.generated()
            .contains(r#"@id("role:db:emergency:group:sre")"#)
    );
}

#[test]
fn explain_on_allow_lists_the_permit_that_allowed() {
    let p = policies(&[]);
    let alice = human("alice", &["sre"]);
    let why = explain(&p, &alice, Action::Request, Some("db"));
    assert!(why.allowed);
    assert!(why.errors.is_empty());
    assert_eq!(why.reasons.len(), 1);
    let r = &why.reasons[0];
    assert_eq!(r.id, "role:db:request:group:sre");
    assert_eq!(r.source, "generated from role `db`");
    assert_eq!(r.effect, "permit");
    assert!(
        r.text.contains(r#"principal in Breakglass::Group::"sre""#),
        "{}",
        r.text
    );
    // A plain deny has no reasons at all.
    let why = explain(&p, &human("erin", &[]), Action::Request, Some("db"));
    assert!(!why.allowed);
    assert!(why.reasons.is_empty());
}

#[test]
fn a_custom_forbid_overrides_the_generated_permit_and_is_named_with_its_line() {
    let carol = human("carol", &["leads"]);
    assert!(allowed(
        &policies(&[]),
        &carol,
        Action::Approve,
        Some("db"),
        false
    ));
    let p = policies(&[(
        "deny.cedar",
        "// Carol approves nothing on the database until further notice.\n\n\
         forbid(principal == Breakglass::Principal::\"carol\", action == Breakglass::Action::\"approve\", resource == Breakglass::Role::\"db\");\n",
    )]);
    assert!(!allowed(&p, &carol, Action::Approve, Some("db"), false));
    assert!(allowed(&p, &carol, Action::Revoke, Some("db"), false));
    assert!(allowed(
        &p,
        &human("bob", &["leads"]),
        Action::Approve,
        Some("db"),
        false
    ));
    let why = explain(&p, &carol, Action::Approve, Some("db"));
    assert!(!why.allowed);
    assert_eq!(why.reasons.len(), 1);
    let r = &why.reasons[0];
    assert_eq!(r.id, "deny.cedar#0");
    assert_eq!(r.source, "policies/deny.cedar:3");
    assert_eq!(r.effect, "forbid");
    assert!(
        r.text
            .starts_with("forbid(principal == Breakglass::Principal::\"carol\"")
    );
}

#[test]
fn custom_policies_keep_their_id_and_may_permit_for_every_role() {
    let p = policies(&[(
        "oncall.cedar",
        "@id(\"oncall-requests-anything\")\n\
         permit(principal in Breakglass::Group::\"oncall\", action == Breakglass::Action::\"request\", resource);\n\
         permit(principal in Breakglass::Group::\"oncall\", action == Breakglass::Action::\"read\", resource == Breakglass::Role::\"web\");\n",
    )]);
    let olga = human("olga", &["oncall"]);
    assert!(allowed(&p, &olga, Action::Request, Some("db"), false));
    assert!(allowed(&p, &olga, Action::Request, Some("web"), false));
    assert!(!allowed(&p, &olga, Action::Approve, Some("db"), false));
    // Pinned to `web`: applies there and nowhere else.
    assert!(allowed(&p, &olga, Action::Read, Some("web"), false));
    assert!(!allowed(&p, &olga, Action::Read, Some("db"), false));
    let why = explain(&p, &olga, Action::Request, Some("db"));
    assert_eq!(why.reasons[0].id, "oncall-requests-anything");
    // A policy starts at its first annotation.
    assert_eq!(why.reasons[0].source, "policies/oncall.cedar:1");
    let why = explain(&p, &olga, Action::Read, Some("web"));
    assert_eq!(why.reasons[0].id, "oncall.cedar#1");
    assert_eq!(why.reasons[0].source, "policies/oncall.cedar:3");
    assert_eq!(p.len(), policies(&[]).len() + 2);
}

#[test]
fn a_syntax_error_names_the_file_and_line() {
    let e = error(&[(
        "broken.cedar",
        "permit(principal, action == Breakglass::Action::\"read\", resource);\n\
         \n\
         permit(principal, action == Breakglass::Action::\"read\", resource) when { principal.kind == };\n",
    )]);
    assert!(e.file.ends_with("policies/broken.cedar"), "{e}");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.column.is_some());
    assert!(!e.reason.contains('\n'));
    assert!(
        e.to_string()
            .starts_with(&format!("{}:3:{}: ", e.file, e.column.unwrap())),
        "{e}"
    );
}

#[test]
fn an_unknown_action_fails_validation_with_file_and_line() {
    let e = error(&[(
        "nuke.cedar",
        "// Nobody nukes.\nforbid(principal, action == Breakglass::Action::\"nuke\", resource);\n",
    )]);
    assert!(e.file.ends_with("nuke.cedar"), "{e}");
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.reason.contains("nuke"), "{e}");
    assert!(e.reason.contains("nuke.cedar#0"), "{e}");
}

#[test]
fn an_unknown_attribute_fails_validation_at_its_line() {
    let e = error(&[
        (
            "a-fine.cedar",
            "permit(principal, action == Breakglass::Action::\"read\", resource) when { context.own };\n",
        ),
        (
            "attr.cedar",
            "@id(\"odd\")\n\
             permit(\n  principal,\n  action == Breakglass::Action::\"read\",\n  resource == Breakglass::Role::\"x\"\n)\n\
             when {\n  principal.nosuchattr == \"a\"\n};\n",
        ),
    ]);
    assert!(e.file.ends_with("attr.cedar"), "{e}");
    assert_eq!(e.line, Some(8), "{e}");
    assert!(e.reason.contains("nosuchattr"), "{e}");
}

#[test]
fn templates_duplicate_ids_and_odd_files_are_refused() {
    let e = error(&[(
        "t.cedar",
        "\npermit(principal == ?principal, action == Breakglass::Action::\"read\", resource);\n",
    )]);
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.reason.contains("templates"), "{e}");

    let e = error(&[(
        "dup.cedar",
        "@id(\"builtin:admins\")\npermit(principal, action == Breakglass::Action::\"read\", resource);\n",
    )]);
    assert_eq!(e.line, Some(1), "{e}");
    assert!(e.reason.contains("`builtin:admins` is already used"), "{e}");

    let big = format!("// {}\n", "x".repeat(1024 * 1024));
    let e = error(&[("big.cedar", &big)]);
    assert!(e.file.ends_with("big.cedar"));
    assert!(e.reason.contains("larger than 1024 KiB"), "{e}");
}

#[test]
fn only_cedar_files_are_read_and_a_missing_directory_is_fine() {
    let p = policies(&[
        ("README.md", "not cedar"),
        ("old.cedar.bak", "not cedar either"),
        (".#lock.cedar", "an editor's lock file"),
        ("ok.cedar", "// nothing yet\n"),
    ]);
    assert_eq!(p.files().len(), 1);
    assert_eq!(p.files()[0].0, "ok.cedar");

    let role = role();
    let facts = || {
        [RoleFacts {
            role: &role,
            emergency_allowed: false,
        }]
    };
    let tmp = tempfile::tempdir().unwrap();
    let missing = Policies::build(facts(), Some(&tmp.path().join("nope"))).unwrap();
    assert!(missing.files().is_empty());
    let none = Policies::build(facts(), None).unwrap();
    assert_eq!(none.hash(), missing.hash());

    let not_a_dir = tmp.path().join("file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let e = Policies::build(facts(), Some(&not_a_dir)).unwrap_err();
    assert_eq!(e.file, not_a_dir.display().to_string());
    assert!(
        e.reason.starts_with("cannot read the policies directory: "),
        "{e}"
    );
    assert_eq!(e.line, None);
}

#[test]
fn files_and_hash_follow_the_custom_files() {
    let one = "forbid(principal, action == Breakglass::Action::\"emergency\", resource);\n";
    let two = "forbid(principal, action == Breakglass::Action::\"review\", resource);\n";
    let a = policies(&[("x.cedar", one)]);
    let again = policies(&[("x.cedar", one)]);
    let b = policies(&[("x.cedar", two)]);
    let renamed = policies(&[("y.cedar", one)]);
    assert_eq!(a.hash(), again.hash());
    assert_eq!(a.files(), again.files());
    assert_ne!(a.hash(), b.hash());
    assert_ne!(a.files(), b.files());
    assert_ne!(a.hash(), renamed.hash());
    assert_eq!(a.hash().len(), 64);
    assert_eq!(
        a.files(),
        [(
            "x.cedar".to_owned(),
            hex::encode(Sha256::digest(one.as_bytes()))
        )]
    );
    assert_ne!(a.hash(), policies(&[]).hash());
}

#[test]
fn a_role_scoped_query_without_a_role_is_denied_with_a_reason() {
    let p = policies(&[]);
    let alice = human("alice", &["sre"]);
    assert!(!allowed(&p, &alice, Action::Request, None, false));
    let why = explain(&p, &alice, Action::Request, None);
    assert!(!why.allowed);
    assert_eq!(why.errors.len(), 1);
    assert!(why.errors[0].contains("names none"), "{:?}", why.errors);
}

#[test]
fn the_generated_text_is_readable_and_names_the_role_file() {
    let p = policies(&[]);
    let text = p.generated();
    assert!(
        text.contains("// Role \"db\", from role file \"db.toml\"."),
        "{text}"
    );
    assert!(text.contains(
        "@id(\"role:db:request:user:dave\")\npermit(principal == Breakglass::Principal::\"dave\", action == Breakglass::Action::\"request\", resource == Breakglass::Role::\"db\");"
    ));
    // Every policy carries an id, and the count matches: 5 built-in, 2 request, 1 approve,
    // 1 revoke, 2 review, 4 read.
    assert_eq!(text.matches("@id(").count(), p.len());
    assert_eq!(p.len(), 15);
    assert!(!p.is_empty());
    assert!(format!("{p:?}").starts_with("Policies { len: 15"));
}

#[test]
fn errors_display_as_file_line_column() {
    let e = |line, column| PolicyError {
        file: "x.cedar".into(),
        line,
        column,
        reason: "bad".into(),
    };
    assert_eq!(e(Some(3), Some(7)).to_string(), "x.cedar:3:7: bad");
    assert_eq!(e(Some(3), None).to_string(), "x.cedar:3: bad");
    assert_eq!(e(None, None).to_string(), "x.cedar: bad");
}

#[test]
fn many_roles_decide_like_one() {
    let roles: Vec<Role> = (0..50)
        .map(|i| {
            Role::parse(
                &format!("r{i}.toml"),
                &DB.replace("id = \"db\"", &format!("id = \"r{i}\""))
                    .replace("group:sre", &format!("group:sre{i}")),
            )
            .unwrap()
        })
        .collect();
    let p = Policies::build(
        roles.iter().map(|role| RoleFacts {
            role,
            emergency_allowed: false,
        }),
        None::<&Path>,
    )
    .unwrap();
    let alice = human("alice", &["sre7"]);
    assert!(allowed(&p, &alice, Action::Request, Some("r7"), false));
    assert!(!allowed(&p, &alice, Action::Request, Some("r8"), false));
    assert!(allowed(
        &p,
        &human("dave", &[]),
        Action::Request,
        Some("r8"),
        false
    ));
}

#[test]
fn a_policy_that_can_never_apply_is_refused() {
    // `read` is about roles, never the installation: Cedar only warns, breakglass refuses.
    let e = error(&[(
        "never.cedar",
        "\n\nforbid(principal, action == Breakglass::Action::\"read\", resource == Breakglass::Installation::\"breakglass\");\n",
    )]);
    assert!(e.file.ends_with("never.cedar"), "{e}");
    assert_eq!((e.line, e.column), (Some(3), Some(1)), "{e}");
    assert!(e.reason.contains("never.cedar#0"), "{e}");
}

#[test]
fn the_generated_text_is_exactly_the_policies_in_force() {
    let p = build_with(true, &[]).1.unwrap();
    let written = PolicySet::from_str(p.generated()).unwrap();
    // Normalised through a static policy: links write their entities in the `__entity` form.
    let strip = |mut json: serde_json::Value| {
        json.as_object_mut().unwrap().remove("annotations");
        Policy::from_json(None, json).unwrap().to_cedar().unwrap()
    };
    let mut in_force: HashMap<String, String> = HashMap::new();
    for slice in &p.slices {
        for set in std::iter::once(&slice.any_role).chain(slice.by_role.values()) {
            for policy in set.policies() {
                in_force.insert(policy.id().to_string(), strip(policy.to_json().unwrap()));
            }
        }
    }
    assert_eq!(written.num_of_policies(), p.len());
    assert_eq!(in_force.len(), p.len());
    for policy in written.policies() {
        let id = policy.annotation("id").unwrap();
        assert_eq!(
            Some(&strip(policy.to_json().unwrap())),
            in_force.get(id),
            "{id}"
        );
        let why = p.known.get(&PolicyId::new(id)).unwrap();
        assert_eq!(why.text, policy.to_cedar().unwrap(), "{id}");
    }
}
