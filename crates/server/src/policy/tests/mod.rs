use std::collections::BTreeSet;
use std::path::Path;

use breakglass_core::{Principal, PrincipalKind, Role, Timestamp};

use super::*;

mod files;

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

fn allowed(
    p: &Policies,
    who: &Principal,
    action: PolicyAction,
    role: Option<&str>,
    own: bool,
) -> bool {
    p.is_allowed(&Query {
        principal: who,
        action,
        role,
        own,
    })
}

fn explain(p: &Policies, who: &Principal, action: PolicyAction, role: Option<&str>) -> Explanation {
    p.explain(&Query {
        principal: who,
        action,
        role,
        own: false,
    })
}

#[test]
fn actions_round_trip_through_their_names() {
    for a in PolicyAction::ALL {
        assert_eq!(PolicyAction::parse(a.as_str()), Some(a));
        assert_eq!(PolicyAction::ALL.get(a.index()), Some(&a));
    }
    assert_eq!(PolicyAction::parse("nuke"), None);
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
    assert!(allowed(
        &p,
        &alice,
        PolicyAction::Request,
        Some("db"),
        false
    ));
    assert!(allowed(&p, &dave, PolicyAction::Request, Some("db"), false));
    assert!(!allowed(&p, &bob, PolicyAction::Request, Some("db"), false));
    assert!(!allowed(
        &p,
        &erin,
        PolicyAction::Request,
        Some("db"),
        false
    ));
    assert!(!allowed(
        &p,
        &alice,
        PolicyAction::Request,
        Some("web"),
        false
    ));
    // Nobody approves their own way in, and requesters read but do not revoke others' grants.
    assert!(!allowed(
        &p,
        &alice,
        PolicyAction::Approve,
        Some("db"),
        false
    ));
    assert!(!allowed(
        &p,
        &alice,
        PolicyAction::Revoke,
        Some("db"),
        false
    ));
    assert!(allowed(&p, &alice, PolicyAction::Read, Some("db"), false));
}

#[test]
fn approvers_approve_and_revoke_and_the_owner_revokes_and_reviews() {
    let p = policies(&[]);
    let bob = human("bob", &["leads"]);
    let erin = human("erin", &["dba"]);
    // Reviewers are `[review] reviewers`, the owner by default: approvers are not among them.
    assert!(!allowed(&p, &bob, PolicyAction::Review, Some("db"), false));
    for action in [
        PolicyAction::Approve,
        PolicyAction::Revoke,
        PolicyAction::Read,
    ] {
        assert!(allowed(&p, &bob, action, Some("db"), false), "{action:?}");
        assert!(!allowed(&p, &bob, action, Some("web"), false), "{action:?}");
    }
    assert!(!allowed(&p, &bob, PolicyAction::Request, Some("db"), false));
    assert!(allowed(&p, &erin, PolicyAction::Review, Some("db"), false));
    assert!(allowed(&p, &erin, PolicyAction::Read, Some("db"), false));
    assert!(!allowed(
        &p,
        &erin,
        PolicyAction::Approve,
        Some("db"),
        false
    ));
    // The owner answers for the role and may end any grant of it (docs/roles.md says so).
    assert!(allowed(&p, &erin, PolicyAction::Revoke, Some("db"), false));
    assert!(!allowed(
        &p,
        &erin,
        PolicyAction::Revoke,
        Some("web"),
        false
    ));
}

#[test]
fn admins_administer_but_do_not_request_approve_or_review() {
    let p = policies(&[]);
    let root = human("root", &["admins"]);
    assert!(allowed(&p, &root, PolicyAction::Administer, None, false));
    assert!(allowed(&p, &root, PolicyAction::ReadAudit, None, false));
    assert!(allowed(&p, &root, PolicyAction::Read, Some("db"), false));
    assert!(allowed(&p, &root, PolicyAction::Revoke, Some("db"), false));
    for action in [
        PolicyAction::Request,
        PolicyAction::Emergency,
        PolicyAction::Approve,
        PolicyAction::Review,
    ] {
        assert!(!allowed(&p, &root, action, Some("db"), false), "{action:?}");
    }
}

#[test]
fn auditors_read_everything_and_change_nothing() {
    let p = policies(&[]);
    let audrey = human("audrey", &["auditors"]);
    assert!(allowed(&p, &audrey, PolicyAction::ReadAudit, None, false));
    assert!(allowed(&p, &audrey, PolicyAction::Read, Some("db"), false));
    assert!(!allowed(&p, &audrey, PolicyAction::Administer, None, false));
    assert!(!allowed(
        &p,
        &audrey,
        PolicyAction::Revoke,
        Some("db"),
        false
    ));
    assert!(!allowed(
        &p,
        &audrey,
        PolicyAction::Approve,
        Some("db"),
        false
    ));
}

#[test]
fn a_service_in_admins_still_cannot_administer() {
    let p = policies(&[]);
    let bot = principal("deploy-bot", PrincipalKind::Service, &["admins"]);
    assert!(!allowed(&p, &bot, PolicyAction::Administer, None, false));
    assert!(allowed(&p, &bot, PolicyAction::ReadAudit, None, false));
    let why = explain(&p, &bot, PolicyAction::Administer, None);
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
    assert!(allowed(&p, &erin, PolicyAction::Revoke, Some("db"), true));
    assert!(allowed(&p, &erin, PolicyAction::Read, Some("db"), true));
    assert!(!allowed(&p, &erin, PolicyAction::Revoke, Some("db"), false));
    assert!(!allowed(&p, &erin, PolicyAction::Read, Some("db"), false));
    // `own` opens nothing else.
    assert!(!allowed(&p, &erin, PolicyAction::Approve, Some("db"), true));
    assert!(!allowed(&p, &erin, PolicyAction::Review, Some("db"), true));
}

#[test]
fn emergency_is_permitted_only_when_the_role_allows_it() {
    let alice = human("alice", &["sre"]);
    let bob = human("bob", &["leads"]);
    let off = build_with(false, &[]).1.unwrap();
    assert!(!allowed(
        &off,
        &alice,
        PolicyAction::Emergency,
        Some("db"),
        false
    ));
    assert!(!off.generated().contains("emergency"));
    let on = build_with(true, &[]).1.unwrap();
    assert!(allowed(
        &on,
        &alice,
        PolicyAction::Emergency,
        Some("db"),
        false
    ));
    assert!(!allowed(
        &on,
        &bob,
        PolicyAction::Emergency,
        Some("db"),
        false
    ));
    assert!(
        on.generated()
            .contains(r#"@id("role:db:emergency:group:sre")"#)
    );
}

#[test]
fn explain_on_allow_lists_the_permit_that_allowed() {
    let p = policies(&[]);
    let alice = human("alice", &["sre"]);
    let why = explain(&p, &alice, PolicyAction::Request, Some("db"));
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
    let why = explain(&p, &human("erin", &[]), PolicyAction::Request, Some("db"));
    assert!(!why.allowed);
    assert!(why.reasons.is_empty());
}

#[test]
fn a_role_scoped_query_without_a_role_is_denied_with_a_reason() {
    let p = policies(&[]);
    let alice = human("alice", &["sre"]);
    assert!(!allowed(&p, &alice, PolicyAction::Request, None, false));
    let why = explain(&p, &alice, PolicyAction::Request, None);
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
    // 2 revoke (the approvers and the owner), 1 review (the owner), 4 read.
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
    assert!(allowed(
        &p,
        &alice,
        PolicyAction::Request,
        Some("r7"),
        false
    ));
    assert!(!allowed(
        &p,
        &alice,
        PolicyAction::Request,
        Some("r8"),
        false
    ));
    assert!(allowed(
        &p,
        &human("dave", &[]),
        PolicyAction::Request,
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
