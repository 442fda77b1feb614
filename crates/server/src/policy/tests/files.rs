//! Custom policy files: how they load, override, fail and hash.

use super::*;

#[test]
fn a_custom_forbid_overrides_the_generated_permit_and_is_named_with_its_line() {
    let carol = human("carol", &["leads"]);
    assert!(allowed(
        &policies(&[]),
        &carol,
        PolicyAction::Approve,
        Some("db"),
        false
    ));
    let p = policies(&[(
        "deny.cedar",
        "// Carol approves nothing on the database until further notice.\n\n\
         forbid(principal == Breakglass::Principal::\"carol\", action == Breakglass::Action::\"approve\", resource == Breakglass::Role::\"db\");\n",
    )]);
    assert!(!allowed(
        &p,
        &carol,
        PolicyAction::Approve,
        Some("db"),
        false
    ));
    assert!(allowed(&p, &carol, PolicyAction::Revoke, Some("db"), false));
    assert!(allowed(
        &p,
        &human("bob", &["leads"]),
        PolicyAction::Approve,
        Some("db"),
        false
    ));
    let why = explain(&p, &carol, PolicyAction::Approve, Some("db"));
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
    assert!(allowed(&p, &olga, PolicyAction::Request, Some("db"), false));
    assert!(allowed(
        &p,
        &olga,
        PolicyAction::Request,
        Some("web"),
        false
    ));
    assert!(!allowed(
        &p,
        &olga,
        PolicyAction::Approve,
        Some("db"),
        false
    ));
    // Pinned to `web`: applies there and nowhere else.
    assert!(allowed(&p, &olga, PolicyAction::Read, Some("web"), false));
    assert!(!allowed(&p, &olga, PolicyAction::Read, Some("db"), false));
    let why = explain(&p, &olga, PolicyAction::Request, Some("db"));
    assert_eq!(why.reasons[0].id, "oncall-requests-anything");
    // A policy starts at its first annotation.
    assert_eq!(why.reasons[0].source, "policies/oncall.cedar:1");
    let why = explain(&p, &olga, PolicyAction::Read, Some("web"));
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

/// Cedar recurses without a limit: this file once overflowed the stack and aborted the broker.
#[test]
fn a_deeply_nested_policy_is_refused_at_its_line_instead_of_crashing() {
    let head = "permit(principal, action == Breakglass::Action::\"read\", resource) when { ";
    let n = 40_000;
    for (body, reason) in [
        (
            format!("{}true{}", "(".repeat(n), ")".repeat(n)),
            "brackets and `if` nest more than 64 deep here, which could exhaust the stack; flatten the expression or split the policy into several",
        ),
        (
            format!(
                "{}true{}",
                "if true then ".repeat(n),
                " else false".repeat(n)
            ),
            "brackets and `if` nest more than 64 deep here",
        ),
        (
            format!("context.own{}", ".own".repeat(n)),
            "this expression nests more than 1000 operators deep, which could exhaust the stack; split the policy into several, or compare with `in [...]` instead of a chain of `||`",
        ),
        (
            format!("{}true", "true || ".repeat(n)),
            "this expression nests more than 1000 operators deep",
        ),
    ] {
        let text = format!("// Too deep.\n{head}{body} }};\n");
        let e = error(&[("deep.cedar", &text)]);
        assert!(e.file.ends_with("policies/deep.cedar"), "{e}");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.column.is_some_and(|c| c > head.len() as u32), "{e}");
        assert!(e.reason.starts_with(reason), "{e}");
    }
}

#[test]
fn policies_load_from_a_caller_with_a_small_stack() {
    // An async worker reloading on SIGHUP has a small stack; unoptimised, Cedar needs tens of
    // KiB per level of brackets.
    let text = format!(
        "permit(principal, action == Breakglass::Action::\"read\", resource) when {{ {}context.own{} }};\n",
        "(".repeat(60),
        ")".repeat(60)
    );
    let loaded = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            build_with(false, &[("nested.cedar", &text)])
                .1
                .map(|p| p.len())
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(loaded.unwrap(), policies(&[]).len() + 1);
}
