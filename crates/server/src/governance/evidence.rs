//! The evidence a reviewer sees, assembled by the broker: the grant's own events and every event
//! its requester caused inside the grant's window, each with its inclusion proof against the
//! latest signed checkpoint (signed on the spot if the log grew), the alerts sent about the grant
//! and whether they were delivered, and the review's state.
//!
//! Events travel as their exact canonical bytes, so a client proves each one itself (leaf hash,
//! inclusion proof, checkpoint signature) and tells the story from what it proved
//! ([`breakglass_core::review::evidence::Summary`]). The alert deliveries are operational state,
//! not part of the log, and are marked so.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use breakglass_audit::{
    Checkpoint, Hash, NodeId, SignedNote, inclusion_proof, needed_for_inclusion,
};
use breakglass_core::review::{self, evidence::Summary};
use breakglass_core::{AuditEvent, DomainError, GrantId};
use serde_json::{Value, json};

use crate::app::App;
use crate::error::ServiceError;
use crate::signin::Caller;

/// The most events by the requester inside the window that one evidence carries.
const MAX_WINDOW_EVENTS: u32 = 2000;

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

/// The evidence for grant `id`, for a caller who may see its reviews, with the grant as stored.
pub async fn evidence(
    app: &App,
    caller: &Caller,
    id: GrantId,
) -> Result<(breakglass_core::Grant, Value), ServiceError> {
    let sg = app.grants.load(id).await?;
    let g = sg.grant;
    let roles = app.catalog.roles();
    let role = roles.get(g.role.as_str());
    if !review::may_see(role, &g, &caller.principal) {
        // Not found rather than forbidden: a grant one may not see is not confirmed to exist.
        return Err(DomainError::UnknownGrant {
            grant: id.to_string(),
        }
        .into());
    }
    let own = app.store.grant_events(id).await?;
    // The requester's own actions inside the grant's window (other grants, sign-ins, refusals).
    let activated_at = super::reviews::activated(app, &g).await?;
    let window_end = review::ended_at(&g).unwrap_or_else(|| app.clock.now());
    let mut by_requester = Vec::new();
    let mut truncated = false;
    if let Some(from) = activated_at {
        let actor = format!("user:{}", g.requester);
        let found = app
            .store
            .events_between(from, window_end, MAX_WINDOW_EVENTS)
            .await?;
        truncated = found.len() >= usize::try_from(MAX_WINDOW_EVENTS).unwrap_or(usize::MAX);
        by_requester = found
            .into_iter()
            .filter(|e| {
                e.to_json().is_some_and(|v| {
                    v.get("actor").and_then(Value::as_str) == Some(actor.as_str())
                        && v.get("grant").and_then(Value::as_str) != Some(id.to_string().as_str())
                })
            })
            .collect();
    }
    // A checkpoint covering every event read (signed now if the log grew since the last one).
    let cp = app.checkpoint().await?;
    let signed = SignedNote::parse(&cp.note).map_err(internal)?;
    let checkpoint = Checkpoint::parse(&signed.text).map_err(internal)?;
    let proofs = prove(app, own.iter().chain(&by_requester), cp.size).await?;
    let events_json = |events: &[AuditEvent], about: &str| -> Vec<Value> {
        events
            .iter()
            .map(|e| {
                json!({
                    "seq": e.seq,
                    "about": about,
                    "leaf": B64.encode(&e.bytes),
                    "proof": proofs.get(&e.seq).map(|p| p.iter().map(Hash::to_base64).collect::<Vec<_>>()),
                })
            })
            .collect()
    };
    let parsed: Vec<Value> = own.iter().filter_map(AuditEvent::to_json).collect();
    let types: BTreeMap<u64, String> = parsed
        .iter()
        .filter_map(|v| Some((v.get("seq")?.as_u64()?, v.get("type")?.as_str()?.to_owned())))
        .collect();
    let alerts: Vec<Value> = app
        .store
        .deliveries_of_grant(id)
        .await?
        .into_iter()
        .map(|d| {
            let status = match (d.delivered_at, d.dead_at) {
                (Some(_), _) => "delivered",
                (None, Some(_)) => "failed",
                (None, None) => "pending",
            };
            json!({
                "seq": d.seq, "event": types.get(&d.seq), "channel": d.channel, "status": status,
                "attempts": d.attempts, "delivered_at": d.delivered_at, "failed_at": d.dead_at,
                "last_error": d.last_error,
            })
        })
        .collect();
    let mut events = events_json(&own, "grant");
    events.extend(events_json(&by_requester, "requester"));
    let state = super::reviews::state_of(app, &g, caller).await?;
    let v = json!({
        "review": state,
        "summary": Summary::from_events(&parsed),
        "window": { "from": activated_at, "to": activated_at.map(|_| window_end) },
        "events": events,
        "requester_events_truncated": truncated,
        "alerts": alerts,
        "checkpoint": {
            "origin": checkpoint.origin, "size": cp.size, "root_hash": checkpoint.root.to_base64(),
            "signed_at": cp.signed_at, "note": cp.note,
            "verifier_key": app.checkpoints.verifier_key(),
        },
    });
    Ok((g, v))
}

/// Inclusion proofs of `events` in the tree of `size`, fetching every stored hash they read at
/// once.
async fn prove<'a>(
    app: &App,
    events: impl Iterator<Item = &'a AuditEvent>,
    size: u64,
) -> Result<BTreeMap<u64, Vec<Hash>>, ServiceError> {
    let seqs: BTreeSet<u64> = events.map(|e| e.seq).filter(|s| *s < size).collect();
    let mut ids: BTreeSet<NodeId> = BTreeSet::new();
    for s in &seqs {
        ids.extend(needed_for_inclusion(*s, size).map_err(internal)?);
    }
    let hashes = app.store.audit_hashes(&ids).await?;
    let mut out = BTreeMap::new();
    for s in seqs {
        let proof =
            inclusion_proof(s, size, &mut |id| hashes.get(&id).copied()).map_err(internal)?;
        out.insert(s, proof);
    }
    Ok(out)
}
