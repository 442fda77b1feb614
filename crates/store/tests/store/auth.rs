//! Sign-in state: sessions and their step-up, principals' factors replaced by compare-and-set,
//! disabling (which ends every token), and failed-attempt throttling with its audit events. The
//! suite runs on both backends.

use breakglass_core::{EventKind, Scope};
use breakglass_store::{Store, StoreError, ThrottlePolicy, TokenKind};

use super::{initialized, note, t, token};

fn denied(what: &str) -> breakglass_core::EventDraft {
    note(EventKind::AuthDenied {
        action: what.into(),
        code: "x".into(),
        message: "x".into(),
    })
}

const POLICY: ThrottlePolicy = ThrottlePolicy {
    free: 2,
    base_ms: 1_000,
    cap_ms: 4_000,
};

pub(crate) async fn sessions_keep_kind_scopes_and_step_up(store: &dyn Store) {
    initialized(store).await;
    let mut s = token("s1", "alice");
    s.kind = TokenKind::Session;
    s.scopes = Some(vec![Scope::Read, Scope::Request]);
    store.create_token(&s, &[], t(3)).await.unwrap();
    let got = store.token("s1").await.unwrap().unwrap();
    assert_eq!(got.kind, TokenKind::Session);
    assert_eq!(got.scopes, s.scopes);
    assert_eq!(got.stepped_up_at, None);
    let before = store.audit_size().await.unwrap();
    assert!(store.step_up("s1", &[denied("up")], t(4)).await.unwrap());
    assert_eq!(store.audit_size().await.unwrap(), before + 1);
    assert_eq!(
        store.token("s1").await.unwrap().unwrap().stepped_up_at,
        Some(t(4))
    );
    assert!(!store.step_up("nope", &[denied("up")], t(5)).await.unwrap());
    store.revoke_token("s1", &[], t(6)).await.unwrap();
    assert!(!store.step_up("s1", &[denied("up")], t(7)).await.unwrap());
    assert_eq!(store.audit_size().await.unwrap(), before + 1);
}

pub(crate) async fn factors_change_by_compare_and_set(store: &dyn Store) {
    initialized(store).await;
    assert!(store.login("alice").await.unwrap().is_none());
    store
        .put_login("alice", "{\"a\":1}", None, false, &[denied("set")], t(3))
        .await
        .unwrap();
    // A second insert, and a write against a version that moved on, change nothing.
    let size = store.audit_size().await.unwrap();
    assert!(matches!(
        store
            .put_login("alice", "{}", None, false, &[denied("x")], t(4))
            .await,
        Err(StoreError::Conflict)
    ));
    let l = store.login("alice").await.unwrap().unwrap();
    assert_eq!((l.body.as_str(), l.version), ("{\"a\":1}", 1));
    store
        .put_login("alice", "{\"a\":2}", Some(1), false, &[], t(5))
        .await
        .unwrap();
    assert!(matches!(
        store
            .put_login("alice", "{\"a\":3}", Some(1), false, &[denied("x")], t(6))
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.audit_size().await.unwrap(), size);
    assert_eq!(store.login("alice").await.unwrap().unwrap().version, 2);
    // A reset ends every token the person holds: a stolen API token must not survive it.
    let mut s = token("s2", "alice");
    s.kind = TokenKind::Session;
    store.create_token(&s, &[], t(7)).await.unwrap();
    store
        .create_token(&token("a2", "alice"), &[], t(7))
        .await
        .unwrap();
    store
        .put_login("alice", "{}", Some(2), true, &[], t(8))
        .await
        .unwrap();
    assert_eq!(
        store.token("s2").await.unwrap().unwrap().revoked_at,
        Some(t(8))
    );
    assert_eq!(
        store.token("a2").await.unwrap().unwrap().revoked_at,
        Some(t(8))
    );
}

pub(crate) async fn disabling_ends_every_token_once(store: &dyn Store) {
    initialized(store).await;
    store
        .create_token(&token("a3", "alice"), &[], t(3))
        .await
        .unwrap();
    assert!(
        store
            .set_disabled("alice", true, &[denied("off")], t(4))
            .await
            .unwrap()
    );
    let size = store.audit_size().await.unwrap();
    assert!(
        !store
            .set_disabled("alice", true, &[denied("off")], t(5))
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_disabled("ghost", true, &[denied("off")], t(5))
            .await
            .unwrap()
    );
    assert_eq!(store.audit_size().await.unwrap(), size);
    assert!(store.principal("alice").await.unwrap().unwrap().disabled);
    assert_eq!(
        store.token("a3").await.unwrap().unwrap().revoked_at,
        Some(t(4))
    );
    assert!(
        store
            .set_disabled("alice", false, &[denied("on")], t(6))
            .await
            .unwrap()
    );
    assert!(!store.principal("alice").await.unwrap().unwrap().disabled);
}

pub(crate) async fn failures_lock_with_backoff_and_are_audited(store: &dyn Store) {
    initialized(store).await;
    let subj = vec![("account alice".to_owned(), POLICY)];
    let size = store.audit_size().await.unwrap();
    for i in 1..=2 {
        let st = store
            .record_auth_failure(&subj, &[denied("f")], t(10 + i))
            .await
            .unwrap();
        assert_eq!(st[0].failures, u32::try_from(i).unwrap());
        assert_eq!(st[0].locked_until, None);
    }
    // The third failure locks for 1 s, the fourth for 2 s, then 4 s (the cap) on.
    let mut locks = Vec::new();
    for i in 3..=6 {
        let st = store
            .record_auth_failure(&subj, &[denied("f")], t(10 + i))
            .await
            .unwrap();
        locks.push(st[0].locked_until.unwrap().unix_millis() - t(10 + i).unix_millis());
    }
    assert_eq!(locks, vec![1000, 2000, 4000, 4000]);
    // Six failure events plus an `auth.locked` for each of the four locks.
    assert_eq!(store.audit_size().await.unwrap(), size + 6 + 4);
    let tail = store.audit_tail(1).await.unwrap();
    let last = tail[0].to_json().unwrap();
    assert_eq!(last["type"], "auth.locked");
    assert_eq!(last["subject"], "account alice");
    let st = store
        .throttles(&["account alice".into(), "source x".into()])
        .await
        .unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].failures, 6);
    store
        .clear_auth_failures("account alice", t(17))
        .await
        .unwrap();
    assert!(
        store
            .throttles(&["account alice".into()])
            .await
            .unwrap()
            .is_empty()
    );
    // Failures an hour apart do not add up.
    store.record_auth_failure(&subj, &[], t(100)).await.unwrap();
    let st = store
        .record_auth_failure(&subj, &[], t(100 + 3601))
        .await
        .unwrap();
    assert_eq!(st[0].failures, 1);
}

pub(crate) async fn refusals_while_locked_are_one_event_per_window_and_counters_are_pruned(
    store: &dyn Store,
) {
    initialized(store).await;
    let subj = vec![("account bob from 10.0.0.9".to_owned(), POLICY)];
    for i in 1..=3 {
        store
            .record_auth_failure(&subj, &[], t(20 + i))
            .await
            .unwrap();
    }
    // Locked from t(23) for 1 s: refusals are counted, and no event is written per refusal.
    let size = store.audit_size().await.unwrap();
    let locked = vec![
        "account bob from 10.0.0.9".to_owned(),
        "source 10.0.0.9".to_owned(),
    ];
    let at = |ms: i64| breakglass_core::Timestamp::from_unix_millis(t(23).unix_millis() + ms);
    let firsts: Vec<bool> = {
        let mut v = Vec::new();
        for ms in [100, 200, 300] {
            v.push(store.record_auth_refusal(&locked, at(ms)).await.unwrap());
        }
        v
    };
    assert_eq!(
        firsts,
        [true, false, false],
        "only the window's first refusal is news"
    );
    assert_eq!(store.audit_size().await.unwrap(), size);
    // A sweep before the window ends records nothing and says when it will have work.
    let next = store.sweep_throttles(at(500)).await.unwrap();
    assert_eq!(next, Some(at(1000)));
    assert_eq!(store.audit_size().await.unwrap(), size);
    // Once it ended: one event with the count, once.
    store.sweep_throttles(at(1000)).await.unwrap();
    store.sweep_throttles(at(2000)).await.unwrap();
    let events: Vec<_> = store
        .audit_tail(5)
        .await
        .unwrap()
        .iter()
        .map(|e| e.to_json().unwrap())
        .filter(|e| e["type"] == "auth.refused_while_locked")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["subject"], "account bob from 10.0.0.9");
    assert_eq!(events[0]["refused"], 3);
    assert_eq!(events[0]["until"], at(1000).to_rfc3339());
    // A refusal outside a lock counts nothing.
    assert!(!store.record_auth_refusal(&locked, at(3000)).await.unwrap());
    // A new failure after the next window's refusals records that window first.
    store
        .record_auth_failure(&subj, &[], at(3000))
        .await
        .unwrap(); // locks 2 s
    store.record_auth_refusal(&locked, at(3100)).await.unwrap();
    store
        .record_auth_failure(&subj, &[], at(5000))
        .await
        .unwrap(); // the window ended at 5000
    let last: Vec<_> = store
        .audit_tail(3)
        .await
        .unwrap()
        .iter()
        .map(|e| e.to_json().unwrap())
        .filter(|e| e["type"] == "auth.refused_while_locked")
        .collect();
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(last[0]["refused"], 1);
    // The counter lives until an hour after its last failure, then the sweep forgets it.
    let next = store.sweep_throttles(at(6000)).await.unwrap().unwrap();
    assert!(next > at(6000), "{next:?}");
    assert_eq!(store.throttles(&locked).await.unwrap().len(), 1);
    let forget = store.sweep_throttles(next).await.unwrap();
    assert!(store.throttles(&locked).await.unwrap().is_empty());
    assert_eq!(forget, None);
}
