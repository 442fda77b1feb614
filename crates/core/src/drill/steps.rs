//! How a drill moves on: each step's check from what the broker saw of the drill grant, the
//! target and the channels. Each is `None` while there is nothing to record yet.

use super::{ChannelDelivery, Drill, DrillCheck, DrillStage, DrillStep, DrillTransition, Probe};
use crate::{Grant, GrantState, Timestamp};

impl Drill {
    /// While waiting for the grant: what its state means for the drill. `None` while it is still
    /// on its way (requested, approved, activating).
    pub fn grant_seen(&self, g: &Grant, now: Timestamp) -> Option<DrillTransition> {
        if self.stage != DrillStage::AwaitingGrant {
            return None;
        }
        let approval = || {
            let last = g.approvals.iter().map(|a| a.at).max().unwrap_or(now);
            let who: Vec<String> = g.approvals.iter().map(|a| a.approver.to_string()).collect();
            DrillCheck::new(
                DrillStep::Approval,
                true,
                g.requested_at,
                last,
                format!("approved by {}", who.join(", ")),
            )
        };
        let approved_at = g
            .approvals
            .iter()
            .map(|a| a.at)
            .max()
            .unwrap_or(g.requested_at);
        let mut checks = Vec::new();
        let next = match &g.state {
            GrantState::Requested | GrantState::Approved { .. } | GrantState::Activating { .. } => {
                return None;
            }
            GrantState::Active { activated_at, .. } => {
                if !self.emergency {
                    checks.push(approval());
                }
                checks.push(DrillCheck::new(
                    DrillStep::Activation,
                    true,
                    approved_at,
                    *activated_at,
                    "the target issued the credential".into(),
                ));
                DrillStage::Exercising
            }
            GrantState::Denied {
                denied_by,
                deny_reason,
                denied_at,
            } => {
                checks.push(DrillCheck::new(
                    DrillStep::Approval,
                    false,
                    g.requested_at,
                    *denied_at,
                    format!("denied by {denied_by}: {deny_reason}"),
                ));
                self.alerts_stage(now)
            }
            GrantState::Cancelled {
                cancelled_by,
                cancelled_at,
            } => {
                checks.push(DrillCheck::new(
                    DrillStep::Approval,
                    false,
                    g.requested_at,
                    *cancelled_at,
                    format!("the drill grant was cancelled by {cancelled_by} before approval"),
                ));
                self.alerts_stage(now)
            }
            GrantState::TimedOut { timed_out_at } => {
                checks.push(DrillCheck::new(
                    DrillStep::Approval,
                    false,
                    g.requested_at,
                    *timed_out_at,
                    "no approver approved the drill within the role's request_ttl".into(),
                ));
                self.alerts_stage(now)
            }
            GrantState::Failed {
                failure, failed_at, ..
            } => {
                if !self.emergency {
                    checks.push(approval());
                }
                checks.push(DrillCheck::new(
                    DrillStep::Activation,
                    false,
                    approved_at,
                    *failed_at,
                    format!("the target did not issue the credential: {failure}"),
                ));
                self.alerts_stage(now)
            }
            GrantState::Revoking { .. }
            | GrantState::Expired { .. }
            | GrantState::Revoked { .. } => {
                checks.push(DrillCheck::new(
                    DrillStep::Exercise,
                    false,
                    now,
                    now,
                    "the drill grant ended before the broker could exercise it".into(),
                ));
                DrillStage::Revoking { since: now }
            }
        };
        Some(self.moved(next, checks, now))
    }

    /// The broker tried the credential at the target: on to the revoke.
    pub fn exercised(&self, probe: &Probe, now: Timestamp) -> Option<DrillTransition> {
        if self.stage != DrillStage::Exercising {
            return None;
        }
        let (passed, detail) = match &probe.outcome {
            Ok(seen) => (true, format!("the target accepted the credential: {seen}")),
            Err(why) => (false, format!("target refused the credential: {why}")),
        };
        let check = DrillCheck::new(
            DrillStep::Exercise,
            passed,
            probe.started_at,
            probe.finished_at,
            detail,
        );
        Some(self.moved(DrillStage::Revoking { since: now }, vec![check], now))
    }

    /// The drill grant ended after the revoke (`g`), and the broker checked that the target
    /// refuses the credential (`refusal`: `Ok` with what was seen if refused, `Err` if it still
    /// works or could not be checked). `None` while the grant is still ending.
    pub fn revoked(&self, g: &Grant, refusal: &Probe, now: Timestamp) -> Option<DrillTransition> {
        let DrillStage::Revoking { since } = self.stage else {
            return None;
        };
        let (passed, detail) = match &g.state {
            GrantState::Revoked { .. } | GrantState::Expired { .. } => {
                (true, "the drill grant is revoked".to_owned())
            }
            GrantState::Failed { failure, .. } => {
                (false, format!("the revoke did not complete: {failure}"))
            }
            GrantState::Requested
            | GrantState::Approved { .. }
            | GrantState::Activating { .. }
            | GrantState::Active { .. }
            | GrantState::Revoking { .. }
            | GrantState::Denied { .. }
            | GrantState::Cancelled { .. }
            | GrantState::TimedOut { .. } => return None,
        };
        let ended_at = match &g.state {
            GrantState::Revoked { ended_at, .. } | GrantState::Expired { ended_at, .. } => {
                *ended_at
            }
            _ => now,
        };
        let revoke = DrillCheck::new(DrillStep::Revoke, passed, since, ended_at, detail);
        let refused = match &refusal.outcome {
            Ok(seen) => DrillCheck::new(
                DrillStep::Refusal,
                true,
                refusal.started_at,
                refusal.finished_at,
                format!("the target refuses the credential: {seen}"),
            ),
            Err(why) => DrillCheck::new(
                DrillStep::Refusal,
                false,
                refusal.started_at,
                refusal.finished_at,
                format!("the target still accepts the credential after the revoke: {why}"),
            ),
        };
        Some(self.moved(self.alerts_stage(now), vec![revoke, refused], now))
    }

    /// Whether every channel of the role accepted the drill's alert. `deliveries` is `None` until
    /// the dispatcher has routed the alert. Completes the drill once each channel accepted it, one
    /// gave up, or the deadline passed; `None` while it is still worth waiting.
    pub fn alerts_seen(
        &self,
        deliveries: Option<&[ChannelDelivery]>,
        now: Timestamp,
    ) -> Option<DrillTransition> {
        let DrillStage::AwaitingAlerts { deadline } = self.stage else {
            return None;
        };
        let check = |passed, at, detail| {
            DrillCheck::new(DrillStep::Alerts, passed, self.started_at, at, detail)
        };
        if self.channels.is_empty() {
            let c = check(
                false,
                now,
                format!(
                    "role `{}` names no alert channel, so nobody would be told of its use",
                    self.role
                ),
            );
            return Some(self.complete(c, now));
        }
        let routed = deliveries.unwrap_or(&[]);
        let mut missing = Vec::new();
        let mut last = self.started_at;
        let mut dead = false;
        for channel in &self.channels {
            match routed.iter().find(|d| &d.channel == channel) {
                Some(ChannelDelivery {
                    delivered_at: Some(at),
                    ..
                }) => last = last.max(*at),
                Some(d) => {
                    dead |= d.dead;
                    let why = d
                        .last_error
                        .as_deref()
                        .map(|e| format!(" (after {} attempts: {e})", d.attempts))
                        .unwrap_or_default();
                    missing.push(format!("channel `{channel}` did not accept the alert{why}"));
                }
                None => missing.push(format!("channel `{channel}` did not accept the alert")),
            }
        }
        if missing.is_empty() {
            let c = check(
                true,
                last,
                format!("accepted by {}", self.channels.join(", ")),
            );
            return Some(self.complete(c, now));
        }
        if now < deadline && !dead {
            return None;
        }
        Some(self.complete(check(false, now, missing.join("; ")), now))
    }
}
