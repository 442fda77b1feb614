//! Every request body of the API, for [`crate::fuzzing::api`]: each is read by the same extractor
//! its handler uses ([`RawBody::json`], which refuses anything but a JSON object, or
//! [`RawBody::form`]) and then checked as far as it can be without a database: by the handler's
//! own helpers and by the core transitions and sign-in checks its service calls, against fixed
//! roles, people and grants. A refusal is rendered as the client would get it.
//!
//! A new body type goes at the end of [`BODIES`] (so saved inputs keep choosing the body they
//! were found with); a test fails while one is missing.

use std::sync::LazyLock;

use axum::response::IntoResponse as _;
use breakglass_core::grant::RequestInput;
use breakglass_core::{
    Actor, Duration, Grant, GrantId, Name, Principal, PrincipalKind, RoleSet, Timestamp,
};
use breakglass_providers::token::TokenProvider;

use super::extract::RawBody;
use super::{ApiError, admin, attestations, drills, grants, jwt, lockdown, reviews, signin};
use crate::fuzzing::{NOW, fixed_roles, person};
use crate::policy::parse_scopes;
use crate::signin::crypto::{password, recovery, totp};

/// Each body type by name, with what checks it. The first byte of a fuzz input picks one.
const BODIES: &[(&str, Check)] = &[
    ("RequestBody", request),
    ("ApproveBody", approve),
    ("ReasonBody", reason),
    ("ExtendBody", extend),
    ("EmptyBody", cancel),
    ("AddUser", add_user),
    ("CreateToken", create_token),
    ("LoginBody", login),
    ("CodeBody", code),
    ("PasswordBody", change_password),
    ("IntrospectForm", introspect),
    ("RecordBody", review),
    ("AttestBody", attest),
    ("StartBody", drill),
    ("EngageBody", engage_lockdown),
    ("LiftBody", lift_lockdown),
];

type Check = fn(RawBody, &World) -> Result<(), ApiError>;

/// The first byte picks the body type (modulo [`BODIES`]), the rest is the body.
pub(crate) fn body(data: &[u8]) {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let Some((_, check)) = BODIES.get(usize::from(*first) % BODIES.len()) else {
        return;
    };
    let Some(world) = WORLD.as_ref() else {
        return;
    };
    if let Err(e) = check(RawBody::from_bytes(rest), world) {
        let _ = (e.message(), e.help(), e.is_refusal(), e.into_response());
    }
}

/// The fixed state bodies are checked against.
struct World {
    roles: &'static RoleSet,
    /// `alice`, in `sre`: may request role `db`.
    alice: Principal,
    /// `bob`, in `leads`: approves role `db`.
    bob: Principal,
    /// Alice's request for `db`, waiting for approval.
    requested: Grant,
    /// The same grant, approved by Bob and active.
    active: Grant,
    tokens: TokenProvider,
    totp_secret: [u8; 20],
    now: Timestamp,
}

static WORLD: LazyLock<Option<World>> = LazyLock::new(World::new);

impl World {
    fn new() -> Option<Self> {
        let roles = fixed_roles()?;
        let role = roles.get("db")?;
        let now = NOW;
        let (alice, bob) = (person("alice", "sre")?, person("bob", "leads")?);
        let input = RequestInput {
            reason: "db down".into(),
            incident: Some("INC-1".into()),
            duration: None,
        };
        let requested =
            Grant::request(GrantId::from_bytes([1; 16]), role, &alice, input, now).ok()?;
        let approved = requested.grant.approve(role, &bob, None, now).ok()?;
        let actor = Actor::User(bob.name.clone());
        let activating = approved
            .grant
            .begin_activation(actor.clone(), "h".into(), now)
            .ok()?;
        let active = activating.grant.activated(actor, "h", "f", now).ok()?;
        Some(Self {
            roles,
            alice,
            bob,
            requested: requested.grant,
            active: active.grant,
            tokens: TokenProvider::new(&[7; 32], "https://breakglass.test"),
            totp_secret: [9; 20],
            now,
        })
    }
}

/// `POST /v1/grants`.
fn request(body: RawBody, w: &World) -> Result<(), ApiError> {
    let req: grants::RequestBody = body.json("{}")?;
    let input = RequestInput {
        reason: req.reason,
        incident: req.incident,
        duration: grants::parse_duration(req.duration.as_deref())?,
    };
    let role = w.roles.require(&req.role)?;
    let id = GrantId::from_bytes([2; 16]);
    let tr = if req.emergency {
        Grant::request_emergency(id, role, &w.alice, input, w.now)?
    } else {
        Grant::request(id, role, &w.alice, input, w.now)?
    };
    let _ = grants::view(&tr.grant, Some(role)).to_string();
    Ok(())
}

/// `POST /v1/grants/{id}/approve`.
fn approve(body: RawBody, w: &World) -> Result<(), ApiError> {
    let req: grants::ApproveBody = body.json("{}")?;
    let role = w.roles.require("db")?;
    let tr = w.requested.approve(role, &w.bob, req.comment, w.now)?;
    let _ = grants::view(&tr.grant, Some(role)).to_string();
    Ok(())
}

/// `POST /v1/grants/{id}/deny` and `POST /v1/grants/{id}/revoke`.
fn reason(body: RawBody, w: &World) -> Result<(), ApiError> {
    let req: grants::ReasonBody = body.json("{}")?;
    let role = w.roles.require("db")?;
    let denied = w.requested.deny(role, &w.bob, &req.reason, w.now);
    let revoked = w
        .active
        .begin_revoke(Some(role), &w.alice, &req.reason, w.now);
    denied?;
    revoked?;
    Ok(())
}

/// `POST /v1/grants/{id}/extend`.
fn extend(body: RawBody, w: &World) -> Result<(), ApiError> {
    let req: grants::ExtendBody = body.json("{}")?;
    let d: Duration = req.duration.parse()?;
    let role = w.roles.require("db")?;
    w.active
        .request_extension(role, &w.alice, d, &req.reason, w.now)?;
    Ok(())
}

/// `POST /v1/grants/{id}/cancel`.
fn cancel(body: RawBody, w: &World) -> Result<(), ApiError> {
    let _: grants::EmptyBody = body.json("{}")?;
    w.requested.cancel(&w.alice, w.now)?;
    Ok(())
}

/// `POST /v1/users`.
fn add_user(body: RawBody, w: &World) -> Result<(), ApiError> {
    let req: admin::AddUser = body.json("{}")?;
    let p = Principal {
        kind: admin::principal_kind(req.kind.as_deref())?,
        name: req.name.parse()?,
        groups: req
            .groups
            .iter()
            .map(|g| g.parse::<Name>())
            .collect::<Result<_, _>>()?,
        disabled: false,
        created_at: w.now,
    };
    let _ = admin::user_view(&p).to_string();
    Ok(())
}

/// `POST /v1/tokens`.
fn create_token(body: RawBody, _: &World) -> Result<(), ApiError> {
    let req: admin::CreateToken = body.json("{}")?;
    // `user` is looked up in the store, nothing else checks it.
    admin::token_ttl(req.ttl.as_deref())?;
    if let Some(scopes) = req.scopes {
        parse_scopes(PrincipalKind::Human, &scopes)?;
        parse_scopes(PrincipalKind::Service, &scopes)?;
    }
    Ok(())
}

/// `POST /v1/login`.
fn login(body: RawBody, w: &World) -> Result<(), ApiError> {
    let req: signin::LoginBody = body.json("{}")?;
    let user: String = req.user.chars().take(200).collect();
    signin::bounded("password", req.password)?;
    if let Some(c) = req.code {
        second_factor(&signin::bounded("code", c)?, w);
    }
    if let Some(new) = req.new_password {
        let new = signin::bounded("new_password", new)?;
        let _ = password::check_new(new.expose(), &user);
    }
    Ok(())
}

/// `POST /v1/step-up` and `POST /v1/totp/confirm`.
fn code(body: RawBody, w: &World) -> Result<(), ApiError> {
    let req: signin::CodeBody = body.json("{}")?;
    second_factor(&signin::bounded("code", req.code)?, w);
    Ok(())
}

/// `POST /v1/password`.
fn change_password(body: RawBody, _: &World) -> Result<(), ApiError> {
    let req: signin::PasswordBody = body.json("{}")?;
    signin::bounded("current", req.current)?;
    let new = signin::bounded("new", req.new)?;
    let _ = password::check_new(new.expose(), "alice");
    Ok(())
}

/// `POST /v1/introspect` (a form, RFC 7662).
fn introspect(body: RawBody, w: &World) -> Result<(), ApiError> {
    let form: jwt::IntrospectForm = body.form("token=x")?;
    if let Ok(claims) = w.tokens.verify(&form.token, w.now) {
        let _ = claims.jti.parse::<GrantId>();
    }
    Ok(())
}

/// A code as `Signin::accept_code` reads it: a recovery code if it looks like one, else TOTP.
fn second_factor(code: &breakglass_providers::Secret, w: &World) {
    let code = code.expose();
    if recovery::looks_like(code) {
        let _ = recovery::find(code, &[]);
    }
    let _ = totp::verify(&w.totp_secret, code, None, 1_700_000_000);
}

/// `POST /v1/grants/{id}/review`: the outcome and notes, by the role's owner, of a grant that is
/// still active (the rule refuses it after checking who may review).
fn review(body: RawBody, w: &World) -> Result<(), ApiError> {
    use breakglass_core::review;
    let req: reviews::RecordBody = body.json("{}")?;
    let outcome = review::Outcome::parse(&req.outcome)?;
    let Some(owner) = person("dana", "dba") else {
        return Ok(());
    };
    let role = w.roles.get("db");
    let at = review::activated_at(&w.active);
    review::record(role, &w.active, at, &[], &owner, outcome, &req.notes, w.now)?;
    Ok(())
}

/// `POST /v1/roles/{id}/attest`: the note, by the role's owner and by someone outside it.
fn attest(body: RawBody, w: &World) -> Result<(), ApiError> {
    let req: attestations::AttestBody = body.json("{}")?;
    let role = w.roles.require("db")?;
    let _ = breakglass_core::attestation::attest(role, &w.alice, &req.note, w.now);
    let Some(owner) = person("dana", "dba") else {
        return Ok(());
    };
    breakglass_core::attestation::attest(role, &owner, &req.note, w.now)?;
    Ok(())
}

/// `POST /v1/drills`: the role and the path, started by the role's owner.
fn drill(body: RawBody, w: &World) -> Result<(), ApiError> {
    let req: drills::StartBody = body.json("{}")?;
    let role = w.roles.require(&req.role)?;
    let Some(owner) = person("dana", "dba") else {
        return Ok(());
    };
    breakglass_core::drill::Drill::start(
        breakglass_core::drill::DrillId::from_bytes([3; 16]),
        GrantId::from_bytes([4; 16]),
        role,
        &owner,
        req.emergency,
        w.now,
    )?;
    Ok(())
}

/// The lockdown scope a body names, as the handler reads it.
fn lockdown_scope(
    role: Option<String>,
    all: bool,
    required: bool,
) -> Result<Option<breakglass_core::LockdownScope>, ApiError> {
    Ok(match lockdown::one_scope(role, all, required)? {
        Some(r) => Some(breakglass_core::LockdownScope::Role(r.parse::<Name>()?)),
        None if required => Some(breakglass_core::LockdownScope::All),
        None => None,
    })
}

/// `POST /v1/lockdown`: scope and reason, by an administrator, with nothing in force.
fn engage_lockdown(body: RawBody, w: &World) -> Result<(), ApiError> {
    let req: lockdown::EngageBody = body.json("{}")?;
    let scope =
        lockdown_scope(req.role, req.all, true)?.unwrap_or(breakglass_core::LockdownScope::All);
    let Some(admin) = person("root", "admins") else {
        return Ok(());
    };
    breakglass_core::lockdown::engage(&[], w.roles, &admin, scope, &req.reason, "l".into(), w.now)?;
    Ok(())
}

/// `POST /v1/lockdown/lift`: scope and reason, by an administrator, with one lockdown of every
/// role in force.
fn lift_lockdown(body: RawBody, w: &World) -> Result<(), ApiError> {
    let req: lockdown::LiftBody = body.json("{}")?;
    let scope = lockdown_scope(req.role, req.all, false)?;
    let Some(admin) = person("root", "admins") else {
        return Ok(());
    };
    let (all, _) = breakglass_core::lockdown::engage(
        &[],
        w.roles,
        &admin,
        breakglass_core::LockdownScope::All,
        "suspected",
        "l".into(),
        w.now,
    )?;
    breakglass_core::lockdown::lift(&[all], &admin, scope.as_ref(), req.reason.as_deref())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every `Deserialize` struct under `src/api/` that is not a query string is a body.
    #[test]
    fn every_request_body_is_fuzzed_and_listed_in_the_docs() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
        let mut found = BTreeSet::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let Some(rest) = line.split("struct ").nth(1) else {
                    continue;
                };
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let derives = lines[i.saturating_sub(3)..i]
                    .iter()
                    .any(|l| l.contains("derive(") && l.contains("Deserialize"));
                if derives && !name.ends_with("Query") {
                    found.insert(name);
                }
            }
        }
        let listed: BTreeSet<String> = BODIES.iter().map(|(n, _)| (*n).to_owned()).collect();
        assert_eq!(found, listed, "add the new body to BODIES (at the end)");
        let docs = include_str!("../fuzzing.rs");
        for (name, _) in BODIES {
            assert!(
                docs.contains(&format!("`{name}`")),
                "list `{name}` in fuzzing.rs"
            );
        }
    }

    #[test]
    fn the_fixed_world_builds_and_good_bodies_pass() {
        let w = WORLD.as_ref().unwrap();
        let ok = |i: usize, json: &str| {
            BODIES[i].1(RawBody::from_bytes(json.as_bytes()), w).unwrap_or_else(|e| {
                panic!("{}: {}", BODIES[i].0, e.message());
            });
        };
        ok(
            0,
            r#"{"role": "db", "reason": "db down", "incident": "INC-7", "duration": "1h"}"#,
        );
        ok(1, r#"{"comment": "ok"}"#);
        ok(2, r#"{"reason": "done"}"#);
        ok(3, r#"{"duration": "30m", "reason": "more"}"#);
        ok(4, "");
        ok(
            5,
            r#"{"name": "carol", "groups": ["sre"], "kind": "service"}"#,
        );
        ok(6, r#"{"user": "rotator", "ttl": "1h", "scopes": ["read"]}"#);
        ok(
            7,
            r#"{"user": "alice", "password": "pw", "code": "123 456"}"#,
        );
        ok(8, r#"{"code": "123456"}"#);
        ok(9, r#"{"current": "a", "new": "b"}"#);
        ok(10, "token=a.b.c");
        // The fixed grant is still active: a well-formed review reaches the rule that says so.
        let active = BODIES[11].1(
            RawBody::from_bytes(br#"{"outcome": "misuse", "notes": "seen"}"#),
            w,
        )
        .unwrap_err();
        assert!(active.message().contains("still"), "{}", active.message());
        ok(12, r#"{"note": "still needed"}"#);
        ok(13, r#"{"role": "db", "emergency": true}"#);
        ok(14, r#"{"role": "db", "reason": "path suspected"}"#);
        ok(15, r#"{"all": true, "reason": "trusted again"}"#);
        let refused = BODIES[0].1(RawBody::from_bytes(b"[1]"), w).unwrap_err();
        assert_eq!(
            refused.message(),
            "malformed JSON body: it must be a JSON object"
        );
    }
}
