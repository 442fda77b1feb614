//! What a role file says about governing the role after the glass is broken: the post-use review
//! every use owes (`[review]`), and how often its owner re-confirms it and how often its path is
//! drilled (`[governance]`). Parsed strictly, like the rest of the role file.

use serde::Deserialize;

use crate::{Duration, Subject, Timestamp};

/// How soon a use is reviewed unless the role says otherwise.
pub const DEFAULT_REVIEW_WITHIN: Duration = Duration::from_secs(72 * 3600);
/// How often the owner re-confirms a role unless it says otherwise.
pub const DEFAULT_ATTEST_EVERY: Duration = Duration::from_secs(180 * 86_400);
/// How often a role's path is drilled unless it says otherwise (Microsoft's emergency-access
/// guidance: at least every 90 days).
pub const DEFAULT_DRILL_EVERY: Duration = Duration::from_secs(90 * 86_400);
/// The longest a use may go unreviewed: a review owed for longer is no review at all.
pub const MAX_REVIEW_WITHIN: Duration = Duration::from_secs(30 * 86_400);
/// The longest interval between attestations or drills: once a year at least.
pub const MAX_GOVERNANCE_INTERVAL: Duration = Duration::from_secs(366 * 86_400);
/// The shortest interval between attestations or drills.
pub const MIN_GOVERNANCE_INTERVAL: Duration = Duration::from_secs(86_400);

/// `[review]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReviewFile {
    #[serde(default)]
    required: Option<ReviewRequired>,
    #[serde(default)]
    within: Option<Duration>,
    #[serde(default)]
    reviewers: Option<Vec<Subject>>,
    #[serde(default)]
    exclude_approvers: Option<bool>,
}

/// `[governance]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GovernanceFile {
    #[serde(default)]
    attest_every: Option<Duration>,
    #[serde(default)]
    expires: Option<String>,
    #[serde(default)]
    on_lapse: Option<OnLapse>,
    #[serde(default)]
    drill_every: Option<Duration>,
}

/// Which uses of a role owe a post-use review.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewRequired {
    /// Every grant that became active.
    Always,
    /// Only emergency self-activations.
    Emergency,
    /// None (the role's uses are still audited, and emergency uses still owe one).
    Never,
}

impl ReviewRequired {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Emergency => "emergency",
            Self::Never => "never",
        }
    }
}

/// The post-use review a role's grants owe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewRule {
    pub required: ReviewRequired,
    /// How long after the grant ends a review of an approved use is due. Emergency uses keep
    /// `[approval.emergency] review_within`, counted from the activation.
    pub within: Duration,
    /// Who may review; empty means the role's owner.
    pub reviewers: Vec<Subject>,
    /// Whether the grant's approvers are kept from reviewing it (the requester always is).
    pub exclude_approvers: bool,
}

impl Default for ReviewRule {
    fn default() -> Self {
        Self {
            required: ReviewRequired::Always,
            within: DEFAULT_REVIEW_WITHIN,
            reviewers: Vec::new(),
            exclude_approvers: true,
        }
    }
}

/// What happens to a role whose attestation lapsed or whose end date passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnLapse {
    /// New requests, emergency ones included, are refused (`role_lapsed`).
    Disable,
    /// Requests go on; the lapse is alerted.
    Warn,
}

impl OnLapse {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Warn => "warn",
        }
    }
}

/// How a role is kept honest over time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Governance {
    /// How often a member of the owner group must re-confirm the role.
    pub attest_every: Duration,
    /// The first instant the role is no longer valid: midnight UTC after the `expires` date.
    pub expires: Option<Timestamp>,
    /// The `expires` date as written, for messages.
    pub expires_date: Option<String>,
    pub on_lapse: OnLapse,
    /// How often the role's path must be drilled.
    pub drill_every: Duration,
}

impl Default for Governance {
    fn default() -> Self {
        Self {
            attest_every: DEFAULT_ATTEST_EVERY,
            expires: None,
            expires_date: None,
            on_lapse: OnLapse::Disable,
            drill_every: DEFAULT_DRILL_EVERY,
        }
    }
}

/// Validates `[review]`.
pub(super) fn review(f: ReviewFile) -> Result<ReviewRule, String> {
    let within = f.within.unwrap_or(DEFAULT_REVIEW_WITHIN);
    if within.as_secs() <= 0 || within > MAX_REVIEW_WITHIN {
        return Err(format!(
            "key `review.within` (`{within}`) must be more than zero and at most 30 days; write `within = \"{DEFAULT_REVIEW_WITHIN}\"` or up to `{MAX_REVIEW_WITHIN}`"
        ));
    }
    if f.reviewers.as_ref().is_some_and(Vec::is_empty) {
        return Err(
            "key `review.reviewers` is empty; name at least one `user:` or `group:`, or leave the key out to have the role's owner review"
                .into(),
        );
    }
    Ok(ReviewRule {
        required: f.required.unwrap_or(ReviewRequired::Always),
        within,
        reviewers: f.reviewers.unwrap_or_default(),
        exclude_approvers: f.exclude_approvers.unwrap_or(true),
    })
}

/// Validates `[governance]`.
pub(super) fn governance(f: GovernanceFile) -> Result<Governance, String> {
    let attest_every = f.attest_every.unwrap_or(DEFAULT_ATTEST_EVERY);
    interval(
        "governance.attest_every",
        attest_every,
        DEFAULT_ATTEST_EVERY,
    )?;
    let drill_every = f.drill_every.unwrap_or(DEFAULT_DRILL_EVERY);
    interval("governance.drill_every", drill_every, DEFAULT_DRILL_EVERY)?;
    let expires = match &f.expires {
        Some(date) => Some(end_of_date(date).ok_or_else(|| {
            format!(
                "key `governance.expires` (`{}`) is not a date; write it as `YYYY-MM-DD`, such as `expires = \"2027-06-30\"` (the role is valid through that day, UTC)",
                date.chars().take(40).collect::<String>()
            )
        })?),
        None => None,
    };
    Ok(Governance {
        attest_every,
        expires,
        expires_date: f.expires,
        on_lapse: f.on_lapse.unwrap_or(OnLapse::Disable),
        drill_every,
    })
}

fn interval(key: &str, d: Duration, default: Duration) -> Result<(), String> {
    if d < MIN_GOVERNANCE_INTERVAL || d > MAX_GOVERNANCE_INTERVAL {
        return Err(format!(
            "key `{key}` (`{d}`) must be between `{MIN_GOVERNANCE_INTERVAL}` and `{MAX_GOVERNANCE_INTERVAL}`; write, for example, `\"{default}\"`"
        ));
    }
    Ok(())
}

/// Midnight UTC after `YYYY-MM-DD`: the first instant the date is over.
fn end_of_date(s: &str) -> Option<Timestamp> {
    if !s.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return None;
    }
    let mut parts = s.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()?;
    let next = date.next_day()?;
    let secs = next.midnight().assume_utc().unix_timestamp();
    Some(Timestamp::from_unix_millis(secs.checked_mul(1000)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;
    use crate::role::tests::EXAMPLE;

    fn parse(extra: &str) -> Result<Role, String> {
        Role::parse("roles/x.toml", &format!("{EXAMPLE}{extra}")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_review_every_use_by_the_owner_and_attest_twice_a_year() {
        let r = parse("").unwrap();
        assert_eq!(r.review, ReviewRule::default());
        assert_eq!(r.review.required, ReviewRequired::Always);
        assert_eq!(r.review.within.as_secs(), 72 * 3600);
        assert!(r.review.exclude_approvers);
        assert_eq!(r.reviewers(), std::slice::from_ref(&r.owner));
        assert_eq!(r.governance, Governance::default());
        assert_eq!(r.governance.attest_every.as_secs(), 180 * 86_400);
        assert_eq!(r.governance.drill_every.as_secs(), 90 * 86_400);
        assert_eq!(r.governance.on_lapse, OnLapse::Disable);
        assert_eq!(r.governance.expires, None);
    }

    #[test]
    fn the_documented_tables_parse() {
        let r = parse(
            "[review]\nrequired = \"emergency\"\nwithin = \"24h\"\nreviewers = [\"group:security\"]\nexclude_approvers = false\n\
             [governance]\nattest_every = \"90d\"\nexpires = \"2027-06-30\"\non_lapse = \"warn\"\ndrill_every = \"30d\"\n",
        )
        .unwrap();
        assert_eq!(r.review.required, ReviewRequired::Emergency);
        assert_eq!(r.review.within.as_secs(), 86_400);
        assert_eq!(r.reviewers().len(), 1);
        assert_eq!(r.reviewers()[0].to_string(), "group:security");
        assert!(!r.review.exclude_approvers);
        assert_eq!(r.governance.attest_every.as_secs(), 90 * 86_400);
        assert_eq!(r.governance.drill_every.as_secs(), 30 * 86_400);
        assert_eq!(r.governance.on_lapse, OnLapse::Warn);
        // Valid through 30 June, UTC: it ends at midnight starting 1 July.
        assert_eq!(
            r.governance.expires.map(Timestamp::to_rfc3339).as_deref(),
            Some("2027-07-01T00:00:00.000Z")
        );
        assert_eq!(r.governance.expires_date.as_deref(), Some("2027-06-30"));
    }

    #[test]
    fn bad_values_name_the_key_and_what_to_write() {
        for (extra, needles) in [
            (
                "[review]\nwithin = \"31d\"\n",
                &["review.within", "30d"][..],
            ),
            ("[review]\nwithin = \"0s\"\n", &["within = \"0s\""][..]),
            ("[review]\nrequired = \"sometimes\"\n", &["sometimes"][..]),
            (
                "[review]\nreviewers = []\n",
                &["review.reviewers", "owner"][..],
            ),
            ("[review]\nreviewer = [\"user:a\"]\n", &["reviewer"][..]),
            (
                "[governance]\nattest_every = \"12h\"\n",
                &["governance.attest_every", "180d"][..],
            ),
            (
                "[governance]\ndrill_every = \"1h\"\n",
                &["governance.drill_every", "90d"][..],
            ),
            (
                "[governance]\nexpires = \"30/06/2027\"\n",
                &["governance.expires", "YYYY-MM-DD"][..],
            ),
            (
                "[governance]\nexpires = \"2027-02-30\"\n",
                &["governance.expires"][..],
            ),
            (
                "[governance]\nexpires = \"+202-06-30\"\n",
                &["governance.expires"][..],
            ),
            ("[governance]\non_lapse = \"ignore\"\n", &["ignore"][..]),
        ] {
            let msg = parse(extra).unwrap_err();
            assert!(msg.contains("roles/x.toml"), "{msg}");
            for n in needles {
                assert!(msg.contains(n), "{extra}: `{n}` not in {msg}");
            }
        }
    }

    #[test]
    fn reviewers_default_to_the_owner() {
        use crate::{Name, Principal, PrincipalKind};
        let name = |s: &str| s.parse::<Name>().unwrap();
        let r = parse("").unwrap();
        let lead = Principal {
            name: name("dana"),
            kind: PrincipalKind::Human,
            groups: [name("dba-leads")].into(),
            disabled: false,
            created_at: Timestamp::from_unix_millis(0),
        };
        let sre = Principal {
            groups: [name("sre")].into(),
            ..lead.clone()
        };
        assert!(r.may_review(&lead));
        assert!(!r.may_review(&sre));
        let r = parse("[review]\nreviewers = [\"group:sre\"]\n").unwrap();
        assert!(r.may_review(&sre));
        assert!(!r.may_review(&lead));
    }
}
