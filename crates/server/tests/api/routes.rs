//! The route table: every route the router serves, the action it names, the scope that action
//! needs and whether it needs a fresh step-up, written out here by hand so that a wrong entry in
//! the router or in the core's `Action` fails a test; and each route shown to enforce its scope
//! for real, and a read-only token refused everything that changes anything.

use breakglass_core::{Action, Scope};
use breakglass_server::api;
use serde_json::json;

use crate::harness::Broker;

/// (method, path, action, scope needed, fresh step-up needed)
type Row = (
    &'static str,
    &'static str,
    Option<Action>,
    Option<&'static str>,
    bool,
);

const ROUTES: &[Row] = &[
    ("GET", "/healthz", None, None, false),
    ("GET", "/readyz", None, None, false),
    ("GET", "/metrics", None, None, false),
    ("GET", "/.well-known/jwks.json", None, None, false),
    ("POST", "/v1/login", None, None, false),
    (
        "POST",
        "/v1/introspect",
        Some(Action::Introspect),
        Some("read"),
        false,
    ),
    ("GET", "/v1/whoami", Some(Action::WhoAmI), None, false),
    ("POST", "/v1/logout", Some(Action::Logout), None, false),
    ("POST", "/v1/step-up", Some(Action::StepUp), None, false),
    (
        "POST",
        "/v1/totp/enroll",
        Some(Action::TotpEnroll),
        Some("factors"),
        false,
    ),
    (
        "POST",
        "/v1/totp/confirm",
        Some(Action::TotpConfirm),
        Some("factors"),
        false,
    ),
    (
        "POST",
        "/v1/password",
        Some(Action::PasswordChange),
        Some("factors"),
        true,
    ),
    (
        "POST",
        "/v1/users/{name}/password-reset",
        Some(Action::UserPasswordReset),
        Some("admin"),
        true,
    ),
    (
        "POST",
        "/v1/users/{name}/totp-reset",
        Some(Action::UserTotpReset),
        Some("admin"),
        true,
    ),
    (
        "POST",
        "/v1/users/{name}/disable",
        Some(Action::UserDisable),
        Some("admin"),
        true,
    ),
    (
        "POST",
        "/v1/users/{name}/enable",
        Some(Action::UserEnable),
        Some("admin"),
        true,
    ),
    (
        "GET",
        "/v1/policy/explain",
        Some(Action::PolicyExplain),
        Some("read"),
        false,
    ),
    (
        "GET",
        "/v1/users",
        Some(Action::UserList),
        Some("read"),
        false,
    ),
    (
        "POST",
        "/v1/users",
        Some(Action::UserAdd),
        Some("admin"),
        true,
    ),
    (
        "GET",
        "/v1/tokens",
        Some(Action::TokenList),
        Some("read"),
        false,
    ),
    (
        "POST",
        "/v1/tokens",
        Some(Action::TokenCreate),
        Some("admin"),
        true,
    ),
    (
        "POST",
        "/v1/tokens/{id}/revoke",
        Some(Action::TokenRevoke),
        Some("factors"),
        false,
    ),
    (
        "GET",
        "/v1/roles",
        Some(Action::RoleList),
        Some("read"),
        false,
    ),
    (
        "GET",
        "/v1/roles/{id}",
        Some(Action::RoleShow),
        Some("read"),
        false,
    ),
    (
        "POST",
        "/v1/roles/{id}/attest",
        Some(Action::RoleAttest),
        Some("approve"),
        true,
    ),
    (
        "GET",
        "/v1/grants",
        Some(Action::GrantList),
        Some("read"),
        false,
    ),
    (
        "POST",
        "/v1/grants",
        Some(Action::GrantRequest),
        Some("request"),
        false,
    ),
    (
        "GET",
        "/v1/grants/{id}",
        Some(Action::GrantShow),
        Some("read"),
        false,
    ),
    (
        "POST",
        "/v1/grants/{id}/approve",
        Some(Action::GrantApprove),
        Some("approve"),
        true,
    ),
    (
        "POST",
        "/v1/grants/{id}/deny",
        Some(Action::GrantDeny),
        Some("approve"),
        true,
    ),
    (
        "POST",
        "/v1/grants/{id}/cancel",
        Some(Action::GrantCancel),
        Some("request"),
        false,
    ),
    (
        "POST",
        "/v1/grants/{id}/revoke",
        Some(Action::GrantRevoke),
        Some("revoke"),
        false,
    ),
    (
        "POST",
        "/v1/grants/{id}/extend",
        Some(Action::GrantExtend),
        Some("request"),
        true,
    ),
    (
        "POST",
        "/v1/grants/{id}/credential",
        Some(Action::CredentialReveal),
        Some("credential"),
        true,
    ),
    (
        "GET",
        "/v1/audit/tail",
        Some(Action::AuditTail),
        Some("read"),
        false,
    ),
    (
        "GET",
        "/v1/audit/key",
        Some(Action::AuditKey),
        Some("read"),
        false,
    ),
    (
        "GET",
        "/v1/audit/checkpoint",
        Some(Action::AuditCheckpoint),
        Some("read"),
        false,
    ),
    (
        "GET",
        "/v1/audit/prove/{seq}",
        Some(Action::AuditProve),
        Some("read"),
        false,
    ),
    (
        "GET",
        "/v1/audit/consistency",
        Some(Action::AuditConsistency),
        Some("read"),
        false,
    ),
    (
        "GET",
        "/v1/audit/export",
        Some(Action::AuditExport),
        Some("read"),
        false,
    ),
];

/// The stronger actions a service moves to on someone else's grant or token, or when replacing
/// a factor, with what they need.
const ESCALATIONS: &[(Action, Action, &str, bool)] = &[
    (
        Action::GrantCancel,
        Action::GrantCancelOther,
        "request",
        true,
    ),
    (
        Action::GrantRevoke,
        Action::GrantRevokeOther,
        "revoke",
        true,
    ),
    (Action::TokenRevoke, Action::TokenRevokeOther, "admin", true),
    (
        Action::TokenCreate,
        Action::TokenCreateService,
        "admin",
        true,
    ),
];

#[test]
fn every_route_names_the_action_scope_and_step_up_of_the_table() {
    let served: Vec<(String, &str, Option<Action>)> = api::routes()
        .into_iter()
        .map(|r| (r.method.to_string(), r.path, r.action))
        .collect();
    let want: Vec<(String, &str, Option<Action>)> = ROUTES
        .iter()
        .map(|(m, p, a, _, _)| ((*m).to_owned(), *p, *a))
        .collect();
    assert_eq!(served, want, "the router's table and this one differ");
    for (method, path, action, scope, step_up) in ROUTES {
        let Some(action) = action else { continue };
        assert_eq!(
            action.scope().map(Scope::as_str),
            *scope,
            "{method} {path}: scope of {action:?}"
        );
        assert_eq!(
            action.needs_step_up(),
            *step_up,
            "{method} {path}: step-up of {action:?}"
        );
    }
    for (from, to, scope, step_up) in ESCALATIONS {
        assert_eq!(from.on_others(), *to);
        assert_eq!(to.scope().map(Scope::as_str), Some(*scope), "{to:?}");
        assert_eq!(to.needs_step_up(), *step_up, "{to:?}");
        assert_eq!(
            from.audit_name(),
            to.audit_name(),
            "one action, one audit name"
        );
    }
    assert_eq!(Action::TotpEnroll.replacing(), Action::TotpReplace);
    assert!(Action::TotpReplace.needs_step_up());
    assert_eq!(Action::GrantRequest.emergency(), Action::GrantEmergency);
    assert!(Action::GrantEmergency.needs_step_up());
    // Every action a route can reach is in the table or an escalation of one in it.
    for a in Action::ALL {
        let routed = ROUTES.iter().any(|r| r.2 == Some(a))
            || ESCALATIONS.iter().any(|e| e.1 == a)
            || a == Action::TotpReplace
            || a == Action::GrantEmergency;
        assert!(routed, "{a:?} is not reachable from any route");
    }
}

/// `path` with its placeholders filled in.
fn concrete(path: &str, grant: &str) -> String {
    path.replace("{id}", grant)
        .replace("{name}", "alice")
        .replace("{seq}", "0")
}

pub(crate) async fn a_read_only_token_is_refused_every_route_that_changes_anything(b: Broker) {
    let alice = b.user("alice", &["sre"]).await;
    let grant = b.request(&alice, "10m").await;
    let reader = b.service("reader", &["sre"], &["read"]).await;
    let size = b.audit().await.len();
    let mut refused = 0;
    for (method, path, action, scope, _) in ROUTES {
        let (Some(action), Some(scope)) = (action, scope) else {
            continue;
        };
        if *scope == "read" {
            continue;
        }
        let r = b
            .call(method, &concrete(path, &grant), Some(&reader), json!({}))
            .await;
        r.refused(403, "scope_missing");
        assert!(
            r.message().ends_with(&format!("not `{scope}`")),
            "{method} {path} ({action:?}): {}",
            r.message()
        );
        refused += 1;
    }
    // A service cannot step up at all; it may sign itself out (that ends only its own token).
    b.post("/v1/step-up", &reader, json!({ "code": "123456" }))
        .await
        .refused(403, "step_up_impossible");
    assert_eq!(refused, 18);
    // Nothing changed: every call left exactly one `auth.denied`.
    let audit = b.audit().await;
    assert_eq!(audit.len(), size + refused + 1);
    assert!(audit[size..].iter().all(|e| e["type"] == "auth.denied"));
    assert_eq!(b.grant(&grant).await["state"], "requested");
    // And each route enforces the scope of its own action, not another's: a person's token
    // holding every scope but one is refused exactly the routes that need that one.
    for missing in Scope::ALL {
        if missing == Scope::Read {
            continue;
        }
        let scopes: Vec<&str> = Scope::ALL
            .iter()
            .filter(|s| **s != missing)
            .map(|s| s.as_str())
            .collect();
        b.step_up_admin().await;
        let t = b
            .post(
                "/v1/tokens",
                &b.admin.clone(),
                json!({ "user": "admin", "ttl": "1h", "scopes": scopes }),
            )
            .await
            .ok();
        let token = t["token"].as_str().unwrap().to_owned();
        for (method, path, _, scope, _) in ROUTES {
            if *path == "/v1/logout" {
                // It would end the very token this loop is using.
                continue;
            }
            let r = b
                .call(method, &concrete(path, &grant), Some(&token), json!({}))
                .await;
            let is_scope_refusal = r.status.as_u16() == 403 && r.code() == "scope_missing";
            assert_eq!(
                is_scope_refusal,
                *scope == Some(missing.as_str()),
                "{method} {path} with every scope but `{missing}`: {} {}",
                r.status,
                r.body
            );
        }
    }
}
