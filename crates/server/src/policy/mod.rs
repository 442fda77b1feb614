//! Authorization by Cedar policy: who may request, approve, revoke, review and read a role's
//! grants, and who may read the audit trail and administer breakglass.
//!
//! The policies are generated from the role files ([`Policies::generated`] shows them) plus the
//! operator's own `*.cedar` files from a policies directory. All of them are validated against
//! `schema.cedarschema` in strict mode when they load, so a policy naming an unknown action,
//! entity type or attribute, or one that can never apply, is refused at load instead of silently
//! never matching. A load is all or nothing: the first problem names its file, line and column.
//! Cedar parses and checks by recursion, so a load runs on a thread with a large stack of its
//! own, and a file nested too deeply for any stack is refused before Cedar reads it (`nesting`).
//!
//! Decisions follow Cedar: a satisfied `forbid` beats any `permit`, and what nothing permits is
//! denied. With thousands of roles the whole set would be evaluated for every decision, so the
//! set is sliced once at load, by action and by role: a policy whose scope says
//! `resource == Breakglass::Role::"x"` (or `in`, roles having no parents) can only ever apply to
//! role `x`, and a policy whose scope names other actions can never apply at all. A policy left
//! out of a slice is one whose scope is false for every query the slice answers, and Cedar checks
//! the scope before any condition, so it could be neither a reason nor an error: the decision
//! and its explanation are those of the whole set.

mod access;
mod catalog;
mod generate;
mod load;
mod nesting;
mod slice;

pub use access::{Access, AccessError, parse_scopes};
pub(crate) use catalog::build_from;
pub use catalog::{Catalog, build, record};
use slice::{Slice, slice, validate};

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr as _;

pub use breakglass_core::PolicyAction;
use breakglass_core::{Principal, PrincipalKind, Role, Subject};
use cedar_policy::{
    Authorizer, Context, Decision, Effect, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    Policy, PolicyId, PolicySet, Request, RestrictedExpression, SlotId,
};
use sha2::{Digest as _, Sha256};

/// The stack policies are loaded on. Nesting is bounded (see `nesting`), so this is far more
/// than a load needs, even unoptimised; it is address space, and only what is used is memory.
const LOAD_STACK_BYTES: usize = 64 * 1024 * 1024;
/// The id of the one `Breakglass::Installation` entity.
const INSTALLATION: &str = "breakglass";

/// What policy generation needs to know about a role.
pub struct RoleFacts<'a> {
    pub role: &'a Role,
    /// Whether the role file allows emergency (self-approved) requests.
    pub emergency_allowed: bool,
}

/// The facts of one decision.
pub struct Query<'a> {
    pub principal: &'a Principal,
    pub action: PolicyAction,
    /// The role the action is about; `None` for installation-wide actions (read_audit, administer)
    /// and for `read` of things not tied to a role.
    pub role: Option<&'a str>,
    /// The grant acted on belongs to the caller (requester == principal).
    pub own: bool,
}

/// A loaded, validated policy set, ready to decide. Immutable; share it in an `Arc` and replace
/// it whole on reload.
pub struct Policies {
    /// One per action, in the order of [`PolicyAction::ALL`].
    slices: Vec<Slice>,
    /// Where each policy came from and its text, by id.
    known: HashMap<PolicyId, Known>,
    names: Names,
    authorizer: Authorizer,
    files: Vec<(String, String)>,
    hash: String,
    generated: String,
    len: usize,
}

/// Why a decision came out as it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub allowed: bool,
    /// The policies that decided: the satisfied permits of an allow, the satisfied forbids of a
    /// deny (none when nothing permitted), sorted by id.
    pub reasons: Vec<Reason>,
    /// Policies that could not be evaluated (they count as not satisfied), or why the query
    /// itself could not be asked.
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    pub id: String,
    /// `generated from role `R``, `built-in`, or `policies/x.cedar:12`.
    pub source: String,
    /// `permit` or `forbid`.
    pub effect: String,
    /// The policy's source text.
    pub text: String,
}

/// Why the policies did not load. Displayed as `file:line:column: reason`, leaving out what is
/// unknown.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{file}{}: {reason}", position(*.line, *.column))]
pub struct PolicyError {
    /// The custom file's path, or the role file a generated policy came from.
    pub file: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
    /// One line: what is wrong, then what to do when Cedar says.
    pub reason: String,
}

impl Policies {
    /// Generates the role policies, reads every `*.cedar` in `dir` (if given and it exists; a
    /// missing directory is fine, an unreadable one is an error), parses and validates all of
    /// them against the schema. Any error fails the whole load.
    pub fn build<'a>(
        roles: impl IntoIterator<Item = RoleFacts<'a>>,
        dir: Option<&Path>,
    ) -> Result<Policies, PolicyError> {
        let files = match dir {
            Some(dir) => load::read_dir(dir)?,
            None => Vec::new(),
        };
        Self::from_files(roles, files)
    }

    /// As [`Policies::build`], with the custom files given by name and content instead of read
    /// from a directory (`policies/NAME` in errors). What the fuzzer feeds.
    pub(crate) fn build_from<'a>(
        roles: impl IntoIterator<Item = RoleFacts<'a>>,
        files: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Result<Policies, PolicyError> {
        let files = files
            .into_iter()
            .map(|(name, bytes)| {
                let path = format!("policies/{name}");
                load::CustomFile::new("policies", name, path, bytes)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_files(roles, files)
    }

    /// Parses, validates and slices on a thread of its own with a [`LOAD_STACK_BYTES`] stack:
    /// Cedar works by recursion, and the caller may be an async worker with a small stack.
    fn from_files<'a>(
        roles: impl IntoIterator<Item = RoleFacts<'a>>,
        files: Vec<load::CustomFile>,
    ) -> Result<Policies, PolicyError> {
        let generated = generate::generate(roles);
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("policy-load".into())
                .stack_size(LOAD_STACK_BYTES)
                .spawn_scoped(scope, || Self::assemble(generated, &files))
                .map_err(|e| PolicyError {
                    file: "policies".into(),
                    line: None,
                    column: None,
                    reason: format!(
                        "cannot start a thread to load the policies: {}; free some memory and try again",
                        e.to_string().to_lowercase()
                    ),
                })?
                .join()
                .map_err(|_| internal("loading the policies stopped unexpectedly"))?
        })
    }

    fn assemble(
        generated: generate::Generated,
        files: &[load::CustomFile],
    ) -> Result<Policies, PolicyError> {
        let names = Names::new()?;
        let fixed = generate::FIXED.as_ref().map_err(Clone::clone)?;

        let mut all = PolicySet::new();
        // Every policy and template in load order, with where it came from.
        let mut order: Vec<(PolicyId, Origin<'_>)> = Vec::new();
        let mut known: HashMap<PolicyId, Known> = HashMap::new();

        for policy in fixed.builtin.iter().cloned() {
            let id = policy.id().clone();
            known.insert(
                id.clone(),
                Known {
                    source: "built-in".into(),
                    text: policy.to_cedar().unwrap_or_default(),
                },
            );
            all.add(policy)
                .map_err(|e| Origin::Builtin.bug(&format!("cannot add policy `{id}`: {e}")))?;
            order.push((id, Origin::Builtin));
        }
        for template in fixed.templates.iter().cloned() {
            let id = template.id().clone();
            known.insert(
                id.clone(),
                Known {
                    source: "built-in template".into(),
                    text: template.to_cedar(),
                },
            );
            all.add_template(template)
                .map_err(|e| Origin::Template.bug(&format!("cannot add template `{id}`: {e}")))?;
            order.push((id, Origin::Template));
        }
        for role in &generated.roles {
            let origin = Origin::Role(role);
            let resource =
                EntityUid::from_type_name_and_id(names.role.clone(), EntityId::new(&role.id));
            for link in &role.links {
                let id = PolicyId::new(&link.id);
                if known.contains_key(&id) {
                    return Err(origin.bug(&format!("policy id `{id}` is generated twice")));
                }
                let principal = match &link.subject {
                    Subject::User(n) => EntityUid::from_type_name_and_id(
                        names.principal.clone(),
                        EntityId::new(n.as_str()),
                    ),
                    Subject::Group(g) => EntityUid::from_type_name_and_id(
                        names.group.clone(),
                        EntityId::new(g.as_str()),
                    ),
                };
                all.link(
                    PolicyId::new(&link.template),
                    id.clone(),
                    HashMap::from([
                        (SlotId::principal(), principal),
                        (SlotId::resource(), resource.clone()),
                    ]),
                )
                .map_err(|e| origin.bug(&format!("cannot generate policy `{id}`: {e}")))?;
                known.insert(
                    id.clone(),
                    Known {
                        source: format!("generated from role `{}`", role.id),
                        text: link.text.clone(),
                    },
                );
                order.push((id, origin));
            }
        }
        for file in files {
            for parsed in load::parse(file)? {
                let id = parsed.policy.id().clone();
                if let Some(other) = known.get(&id) {
                    return Err(load::at(
                        file,
                        parsed.offset,
                        format!(
                            "policy id `{id}` is already used by the policy from {}; give each policy its own `@id`",
                            other.source
                        ),
                    ));
                }
                let (line, _) = load::line_col(&file.text, parsed.offset);
                known.insert(
                    id.clone(),
                    Known {
                        source: format!("{}:{line}", file.label),
                        text: parsed.policy.to_cedar().unwrap_or_default(),
                    },
                );
                all.add(parsed.policy)
                    .map_err(|e| load::at(file, parsed.offset, load::one_line(&e.to_string())))?;
                order.push((
                    id,
                    Origin::File {
                        file,
                        offset: parsed.offset,
                    },
                ));
            }
        }

        validate(&fixed.schema, &all, &order)?;
        let slices = slice(&names, &all, &order)?;

        let mut hasher = Sha256::new();
        hasher.update(generated.text.as_bytes());
        for file in files {
            // Framed by name and length so that no two different sets of files hash alike.
            hasher.update(b"\0file\0");
            hasher.update(file.name.as_bytes());
            hasher.update(b"\0");
            hasher.update((file.text.len() as u64).to_be_bytes());
            hasher.update(file.text.as_bytes());
        }
        Ok(Policies {
            slices,
            known,
            names,
            authorizer: Authorizer::new(),
            files: files
                .iter()
                .map(|f| (f.name.clone(), f.sha256.clone()))
                .collect(),
            hash: hex::encode(hasher.finalize()),
            generated: generated.text,
            len: all.num_of_policies(),
        })
    }

    pub fn is_allowed(&self, q: &Query<'_>) -> bool {
        self.decide(q)
            .is_ok_and(|(response, _)| response.decision() == Decision::Allow)
    }

    pub fn explain(&self, q: &Query<'_>) -> Explanation {
        let (response, set) = match self.decide(q) {
            Ok(decided) => decided,
            Err(error) => {
                return Explanation {
                    allowed: false,
                    reasons: Vec::new(),
                    errors: vec![error],
                };
            }
        };
        let mut reasons: Vec<Reason> = response
            .diagnostics()
            .reason()
            .map(|id| {
                let known = self.known.get(id);
                Reason {
                    id: id.to_string(),
                    source: known.map(|k| k.source.clone()).unwrap_or_default(),
                    effect: match set.policy(id).map(Policy::effect) {
                        Some(Effect::Forbid) => "forbid".into(),
                        _ => "permit".into(),
                    },
                    text: known.map(|k| k.text.clone()).unwrap_or_default(),
                }
            })
            .collect();
        reasons.sort_by(|a, b| a.id.cmp(&b.id));
        Explanation {
            allowed: response.decision() == Decision::Allow,
            reasons,
            errors: response
                .diagnostics()
                .errors()
                .map(|e| load::one_line(&e.to_string()))
                .collect(),
        }
    }

    /// `(file name, SHA-256 hex of its bytes)` of each custom file loaded, sorted by name.
    pub fn files(&self) -> &[(String, String)] {
        &self.files
    }

    /// SHA-256 hex over the whole effective policy text (generated, then each custom file with
    /// its name); the same inputs always give the same hash.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The generated policy text, with comments naming each role file.
    pub fn generated(&self) -> &str {
        &self.generated
    }

    /// The number of policies, generated and custom.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slice for the query, and the Cedar answer over it.
    fn decide(&self, q: &Query<'_>) -> Result<(cedar_policy::Response, &PolicySet), String> {
        let slice = self
            .slices
            .get(q.action.index())
            .ok_or_else(|| format!("no policies for action `{}`", q.action.as_str()))?;
        let action = self
            .names
            .actions
            .get(q.action.index())
            .ok_or_else(|| format!("no policies for action `{}`", q.action.as_str()))?;
        let (set, resource) = if q.action.is_about_a_role() {
            let role = q.role.ok_or_else(|| {
                format!(
                    "action `{}` is about a role and the query names none",
                    q.action.as_str()
                )
            })?;
            (
                slice.by_role.get(role).unwrap_or(&slice.any_role),
                EntityUid::from_type_name_and_id(self.names.role.clone(), EntityId::new(role)),
            )
        } else {
            (&slice.any_role, self.names.installation.clone())
        };
        let principal = EntityUid::from_type_name_and_id(
            self.names.principal.clone(),
            EntityId::new(q.principal.name.as_str()),
        );
        let groups: Vec<EntityUid> = q
            .principal
            .groups
            .iter()
            .map(|g| {
                EntityUid::from_type_name_and_id(
                    self.names.group.clone(),
                    EntityId::new(g.as_str()),
                )
            })
            .collect();
        let kind = match q.principal.kind {
            PrincipalKind::Human => "human",
            PrincipalKind::Service => "service",
        };
        let me = Entity::new_with_tags(
            principal.clone(),
            [(
                "kind".to_owned(),
                RestrictedExpression::new_string(kind.to_owned()),
            )],
            groups.iter().cloned(),
            [],
        )
        .map_err(|e| format!("cannot describe the principal: {e}"))?;
        // Built without the schema: these entities conform by construction, and checking them
        // again on every decision would cost more than the decision.
        let entities = Entities::from_entities(
            groups
                .into_iter()
                .map(|g| Entity::new_no_attrs(g, Default::default()))
                .chain([me]),
            None,
        )
        .map_err(|e| format!("cannot describe the principal: {e}"))?;
        let context =
            Context::from_pairs([("own".to_owned(), RestrictedExpression::new_bool(q.own))])
                .map_err(|e| format!("cannot build the context: {e}"))?;
        let request = Request::new(principal, action.clone(), resource, context, None)
            .map_err(|e| format!("cannot build the request: {e}"))?;
        Ok((self.authorizer.is_authorized(&request, set, &entities), set))
    }
}

impl fmt::Debug for Policies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policies")
            .field("len", &self.len)
            .field("files", &self.files)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// Entity type names and uids used on every decision, parsed once.
struct Names {
    principal: EntityTypeName,
    group: EntityTypeName,
    role: EntityTypeName,
    installation: EntityUid,
    /// In the order of [`PolicyAction::ALL`].
    actions: Vec<EntityUid>,
}

impl Names {
    fn new() -> Result<Self, PolicyError> {
        let ty = |name: &str| {
            EntityTypeName::from_str(name)
                .map_err(|e| internal(&format!("bad entity type `{name}`: {e}")))
        };
        let action = ty("Breakglass::Action")?;
        Ok(Self {
            principal: ty("Breakglass::Principal")?,
            group: ty("Breakglass::Group")?,
            role: ty("Breakglass::Role")?,
            installation: EntityUid::from_type_name_and_id(
                ty("Breakglass::Installation")?,
                EntityId::new(INSTALLATION),
            ),
            actions: PolicyAction::ALL
                .iter()
                .map(|a| {
                    EntityUid::from_type_name_and_id(action.clone(), EntityId::new(a.as_str()))
                })
                .collect(),
        })
    }
}

/// What [`Reason`] says of a policy.
struct Known {
    /// `built-in`, `generated from role `R`` or `policies/x.cedar:12`.
    source: String,
    text: String,
}

/// Where a policy or template came from, while loading.
#[derive(Clone, Copy)]
enum Origin<'a> {
    Builtin,
    Template,
    Role(&'a generate::RolePolicies),
    File {
        file: &'a load::CustomFile,
        offset: usize,
    },
}

impl Origin<'_> {
    /// An error in a generated policy: a bug in breakglass, reported against the role file.
    fn bug(&self, what: &str) -> PolicyError {
        let file = match self {
            Self::Builtin | Self::Template => "built-in policies".into(),
            Self::Role(role) if role.file.is_empty() => format!("role `{}`", role.id),
            Self::Role(role) => role.file.clone(),
            Self::File { file, .. } => file.path.clone(),
        };
        PolicyError {
            file,
            line: None,
            column: None,
            reason: format!("{what}; this is a bug in breakglass, please report it"),
        }
    }
}

fn internal(what: &str) -> PolicyError {
    PolicyError {
        file: "built-in policies".into(),
        line: None,
        column: None,
        reason: format!("{what}; this is a bug in breakglass, please report it"),
    }
}

/// `:line:column`, `:line` or nothing.
fn position(line: Option<u32>, column: Option<u32>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests;
