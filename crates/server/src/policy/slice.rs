//! Loading checks and the per-action, per-role slices of a policy set: strict validation against
//! the schema, and the distribution of policies into slices (see the parent module's docs for why
//! slicing keeps every decision exact).

use std::collections::HashMap;

use cedar_policy::ffi::DetailedError;
use cedar_policy::{
    ActionConstraint, EntityUid, Policy, PolicyId, PolicySet, PolicySetError, ResourceConstraint,
    Schema, ValidationMode, Validator,
};

use super::{Names, Origin, PolicyAction, PolicyError, internal, load};

/// The policies that can apply to one action.
pub(super) struct Slice {
    /// For a role with no policy of its own for this action (and for installation-wide actions):
    /// the policies not pinned to one role.
    pub(super) any_role: PolicySet,
    /// For each role some policy is pinned to: those plus `any_role`.
    pub(super) by_role: HashMap<String, PolicySet>,
}

/// Strict validation of the whole set. Cedar's warnings count as errors too: they flag a policy
/// that can never apply (a `forbid` that silently protects nothing) or text that reads
/// differently than it evaluates (bidirectional or confusable characters). The first problem,
/// by load order then line, is returned with a count of the others.
pub(super) fn validate(
    schema: &Schema,
    all: &PolicySet,
    order: &[(PolicyId, Origin<'_>)],
) -> Result<(), PolicyError> {
    let result = Validator::new(schema.clone()).validate(all, ValidationMode::Strict);
    if result.validation_passed_without_warnings() {
        return Ok(());
    }
    let order: HashMap<&PolicyId, (usize, Origin<'_>)> = order
        .iter()
        .enumerate()
        .map(|(i, (id, origin))| (id, (i, *origin)))
        .collect();
    let problems = result
        .validation_errors()
        .map(|e| (e.policy_id(), DetailedError::from(e)))
        .chain(
            result
                .validation_warnings()
                .map(|w| (w.policy_id(), DetailedError::from(w))),
        );
    let mut errors: Vec<(usize, u32, PolicyError)> = problems
        .map(|(id, d)| match order.get(id) {
            Some((i, Origin::File { file, offset })) => {
                let error = load::file_error(file, &d, *offset);
                (*i, error.line.unwrap_or_default(), error)
            }
            Some((i, origin)) => (
                *i,
                0,
                origin.bug(&format!(
                    "a generated policy is invalid: {}",
                    load::sentence(&d)
                )),
            ),
            None => (usize::MAX, 0, internal(&load::sentence(&d))),
        })
        .collect();
    errors.sort_by_key(|(i, line, _)| (*i, *line));
    let more = errors.len().saturating_sub(1);
    let Some((_, _, mut first)) = errors.into_iter().next() else {
        return Ok(());
    };
    if more > 0 {
        first.reason.push_str(&format!(
            " ({more} more {} after this one)",
            if more == 1 { "problem" } else { "problems" }
        ));
    }
    Err(first)
}

/// Distributes the policies into per-action, per-role slices (see the module docs for why this
/// keeps every decision exact).
pub(super) fn slice(
    names: &Names,
    all: &PolicySet,
    order: &[(PolicyId, Origin<'_>)],
) -> Result<Vec<Slice>, PolicyError> {
    let mut any_role: Vec<Vec<&Policy>> = vec![Vec::new(); PolicyAction::ALL.len()];
    let mut pinned: Vec<HashMap<String, Vec<&Policy>>> =
        vec![HashMap::new(); PolicyAction::ALL.len()];
    // Templates are not in `policies()`: only their links are ever evaluated.
    for policy in order.iter().filter_map(|(id, _)| all.policy(id)) {
        let actions: Vec<PolicyAction> = match policy.action_constraint() {
            ActionConstraint::Any => PolicyAction::ALL.to_vec(),
            ActionConstraint::Eq(uid) => action_of(&uid).into_iter().collect(),
            ActionConstraint::In(uids) => uids.iter().filter_map(action_of).collect(),
        };
        // For a link this is the constraint with its slot filled in.
        let role = match policy.resource_constraint() {
            ResourceConstraint::Eq(uid) | ResourceConstraint::In(uid)
                if uid.type_name() == &names.role =>
            {
                Some(uid.id().unescaped().to_owned())
            }
            _ => None,
        };
        for action in actions {
            match &role {
                // Pinned to a role, yet about the installation: can never apply.
                Some(_) if !action.is_about_a_role() => {}
                Some(role) => {
                    if let Some(by_role) = pinned.get_mut(action.index()) {
                        by_role.entry(role.clone()).or_default().push(policy);
                    }
                }
                None => {
                    if let Some(list) = any_role.get_mut(action.index()) {
                        list.push(policy);
                    }
                }
            }
        }
    }
    any_role
        .into_iter()
        .zip(pinned)
        .map(|(common, by_role)| {
            let by_role = by_role
                .into_iter()
                .map(|(role, own)| Ok((role, assemble(all, common.iter().chain(&own))?)))
                .collect::<Result<HashMap<_, _>, PolicyError>>()?;
            Ok(Slice {
                any_role: assemble(all, common.iter())?,
                by_role,
            })
        })
        .collect()
}

/// A policy set of `members` of `all`, static policies and links (with their templates) alike.
fn assemble<'p>(
    all: &PolicySet,
    members: impl Iterator<Item = &'p &'p Policy>,
) -> Result<PolicySet, PolicyError> {
    let failed = |e: PolicySetError| internal(&format!("cannot assemble a policy slice: {e}"));
    let mut set = PolicySet::new();
    for policy in members {
        match (policy.template_id(), policy.template_links()) {
            (Some(template), Some(links)) => {
                if set.template(template).is_none() {
                    let t = all
                        .template(template)
                        .ok_or_else(|| internal(&format!("template `{template}` is missing")))?;
                    set.add_template(t.clone()).map_err(failed)?;
                }
                set.link(template.clone(), policy.id().clone(), links)
                    .map_err(failed)?;
            }
            _ => set.add((*policy).clone()).map_err(failed)?,
        }
    }
    Ok(set)
}

/// The action a `Breakglass::Action` uid names (validation has already refused any other).
fn action_of(uid: &EntityUid) -> Option<PolicyAction> {
    PolicyAction::parse(uid.id().unescaped())
}
