//! Lockdowns: in force until lifted, one of each scope at a time, lifted all or nothing, each
//! change written with its events. The suite runs on both backends.

use breakglass_core::{EventKind, Lockdown, LockdownScope};
use breakglass_store::{GrantUpdate, Store, StoreError};

use super::{initialized, note, t};

fn lockdown(id: &str, scope: LockdownScope, at: i64) -> Lockdown {
    Lockdown {
        id: id.into(),
        scope,
        reason: "path compromised".into(),
        engaged_by: "admin".parse().unwrap(),
        engaged_at: t(at),
    }
}

fn engaged(l: &Lockdown) -> breakglass_core::EventDraft {
    note(EventKind::LockdownEngaged {
        lockdown: l.id.clone(),
        scope: l.scope.as_string(),
        reason: l.reason.clone(),
    })
}

pub(crate) async fn lockdowns_are_in_force_until_lifted_once_per_scope(store: &dyn Store) {
    initialized(store).await;
    assert!(store.lockdowns().await.unwrap().is_empty());
    let db = lockdown("l1", LockdownScope::Role("db".parse().unwrap()), 10);
    let all = lockdown("l2", LockdownScope::All, 11);
    let size = store.audit_size().await.unwrap();
    assert!(
        store
            .engage_lockdown(&db, &[engaged(&db)], t(10))
            .await
            .unwrap()
    );
    assert!(
        store
            .engage_lockdown(&all, &[engaged(&all)], t(11))
            .await
            .unwrap()
    );
    assert_eq!(store.audit_size().await.unwrap(), size + 2);
    // A second lockdown of a scope in force is not recorded, nor are its events.
    let again = lockdown("l3", LockdownScope::All, 12);
    assert!(
        !store
            .engage_lockdown(&again, &[engaged(&again)], t(12))
            .await
            .unwrap()
    );
    assert_eq!(store.audit_size().await.unwrap(), size + 2);
    assert_eq!(store.lockdowns().await.unwrap(), [db.clone(), all.clone()]);

    // Lifting one already lifted (or unknown) changes nothing at all.
    let lifted = note(EventKind::LockdownLifted {
        lockdown: "l1".into(),
        scope: "role:db".into(),
        engaged_by: "admin".into(),
        reason: None,
    });
    let err = store
        .lift_lockdowns(
            &["l1".into(), "nope".into()],
            "admin",
            std::slice::from_ref(&lifted),
            t(13),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err}");
    assert_eq!(store.lockdowns().await.unwrap().len(), 2);
    assert_eq!(store.audit_size().await.unwrap(), size + 2);

    store
        .lift_lockdowns(&["l1".into()], "admin", &[lifted], t(14))
        .await
        .unwrap();
    assert_eq!(store.lockdowns().await.unwrap(), std::slice::from_ref(&all));
    assert_eq!(store.audit_size().await.unwrap(), size + 3);
    // Once lifted, the scope may be locked down again.
    let db2 = lockdown("l4", LockdownScope::Role("db".parse().unwrap()), 15);
    assert!(
        store
            .engage_lockdown(&db2, &[engaged(&db2)], t(15))
            .await
            .unwrap()
    );
    assert_eq!(store.lockdowns().await.unwrap(), [all, db2]);
}

pub(crate) async fn a_batch_of_grant_updates_skips_only_the_stale(store: &dyn Store) {
    initialized(store).await;
    let (a, va) = super::activate(store, 1).await;
    let (b, vb) = super::activate(store, 2).await;
    let size = store.audit_size().await.unwrap();
    let mut a2 = a.clone();
    a2.reason = "changed a".into();
    let mut b2 = b.clone();
    b2.reason = "changed b".into();
    let ev = |k: &str| {
        note(EventKind::AuthDenied {
            action: k.into(),
            code: "x".into(),
            message: "x".into(),
        })
    };
    let batch = [
        GrantUpdate {
            grant: a2.clone(),
            expected_version: va,
            events: vec![ev("a")],
        },
        // Stale: written by nobody, and its event with it.
        GrantUpdate {
            grant: b2,
            expected_version: vb - 1,
            events: vec![ev("b")],
        },
    ];
    let out = store.update_grants(&batch, t(20)).await.unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].as_ref().map(|s| s.version), Some(va + 1));
    assert!(out[1].is_none());
    assert_eq!(
        store.grant(a.id).await.unwrap().unwrap().grant.reason,
        "changed a"
    );
    assert_eq!(store.grant(b.id).await.unwrap().unwrap().grant, b);
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
}
