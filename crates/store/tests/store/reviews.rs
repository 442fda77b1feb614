//! Post-use reviews in the store: a review is written over its grant's version (two racing on one
//! grant take turns), at most one final review per grant, the grants owed one, each reminder once,
//! and the evidence reads.

use breakglass_core::review::{self, Outcome, Reminder};
use breakglass_core::{Actor, Role, Timestamp};
use breakglass_store::{Store, StoreError};

use super::{ROLE, activate, initialized, t, user};

/// An active grant, ended by expiry at 40 s; returns it with its version.
async fn ended(store: &dyn Store, id: u8) -> (breakglass_core::Grant, i64) {
    let (g, v) = activate(store, id).await;
    let tr = g.begin_expiry(t(40 * 60)).unwrap();
    store
        .update_grant(&tr.grant, v, None, &tr.events, t(40 * 60))
        .await
        .unwrap();
    let tr = tr
        .grant
        .finish_revoke(Actor::System("test"), t(40 * 60))
        .unwrap();
    store
        .update_grant(&tr.grant, v + 1, None, &tr.events, t(40 * 60))
        .await
        .unwrap();
    (tr.grant, v + 2)
}

pub(crate) async fn reviews_are_recorded_once_over_the_grant_version(store: &dyn Store) {
    initialized(store).await;
    let role = Role::parse("db.toml", ROLE).unwrap();
    let (g, v) = ended(store, 21).await;
    let (_, _) = activate(store, 22).await;
    // Owed: the ended grant (not the active one), with when it became active.
    let owed = store.unreviewed().await.unwrap();
    assert_eq!(owed.len(), 1);
    assert_eq!(owed[0].0.grant.id, g.id);
    assert_eq!(owed[0].1, t(5));
    let owner = user("olga", &["o"]);
    let now = t(3600);
    let follow = review::record(
        Some(&role),
        &g,
        review::activated_at(&g),
        &[],
        &owner,
        Outcome::FollowUp,
        "asking alice",
        now,
    )
    .unwrap();
    let size = store.audit_size().await.unwrap();
    store
        .record_review(&follow.grant, v, &follow.review, &follow.events, now)
        .await
        .unwrap();
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
    // Still owed after a follow-up.
    assert_eq!(store.unreviewed().await.unwrap().len(), 1);
    // A decision made from the old version conflicts and writes nothing.
    let stale = review::record(
        Some(&role),
        &g,
        review::activated_at(&g),
        &[],
        &owner,
        Outcome::Legitimate,
        "fine",
        now,
    )
    .unwrap();
    let err = store
        .record_review(&stale.grant, v, &stale.review, &stale.events, now)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
    let earlier = store.reviews_of(g.id).await.unwrap();
    assert_eq!(earlier.len(), 1);
    assert_eq!(earlier[0].outcome, Outcome::FollowUp);
    let done = review::record(
        Some(&role),
        &g,
        review::activated_at(&g),
        &earlier,
        &owner,
        Outcome::Misuse,
        "not for INC-1",
        now,
    )
    .unwrap();
    store
        .record_review(&done.grant, v + 1, &done.review, &done.events, now)
        .await
        .unwrap();
    assert!(store.unreviewed().await.unwrap().is_empty());
    let all = store.reviews(10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].outcome, Outcome::Misuse, "newest first");
    // The grant's own events, and the events in a window.
    let events = store.grant_events(g.id).await.unwrap();
    assert!(events.len() >= 6, "{}", events.len());
    let types: Vec<String> = events
        .iter()
        .map(|e| e.to_json().unwrap()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types.last().unwrap(), "review.recorded");
    let window = store.events_between(t(3), t(5), 100).await.unwrap();
    assert!(!window.is_empty());
    assert!(window.iter().all(|e| {
        let time = e.to_json().unwrap()["time"].as_str().unwrap().to_owned();
        let time = Timestamp::parse_rfc3339(&time).unwrap();
        time >= t(3) && time <= t(5)
    }));
    assert!(store.deliveries_of_grant(g.id).await.unwrap().is_empty());
}

pub(crate) async fn each_review_reminder_is_sent_once(store: &dyn Store) {
    initialized(store).await;
    let role = Role::parse("db.toml", ROLE).unwrap();
    let (g, _) = ended(store, 23).await;
    let owed = review::owed(Some(&role), &g, review::activated_at(&g)).unwrap();
    let due = review::reminders_due(&g, &owed, &[], &[], owed.due);
    assert_eq!(due.len(), 1);
    let (stage, event) = due.into_iter().next().unwrap();
    let size = store.audit_size().await.unwrap();
    assert!(
        store
            .send_review_reminder(g.id, stage, std::slice::from_ref(&event), owed.due)
            .await
            .unwrap()
    );
    assert!(
        !store
            .send_review_reminder(g.id, stage, &[event], owed.due)
            .await
            .unwrap(),
        "a second send writes nothing"
    );
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
    assert_eq!(
        store.review_reminders().await.unwrap(),
        vec![(g.id, Reminder::Overdue)]
    );
}
