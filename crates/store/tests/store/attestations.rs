//! Owner attestation's facts: when each role's content came into force, the latest attestation of
//! each content, and notices sent once. The suite runs on both backends.

use breakglass_core::attestation::{Attestation, NoticeKey, NoticeKind};
use breakglass_core::{Actor, EventDraft, EventKind};
use breakglass_store::Store;

use super::{initialized, t};

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(r, h)| ((*r).to_owned(), (*h).to_owned()))
        .collect()
}

fn attested(role: &str, hash: &str, by: &str, at: i64) -> (Attestation, EventDraft) {
    let a = Attestation {
        role: role.into(),
        hash: hash.into(),
        by: by.into(),
        note: "still needed".into(),
        at: t(at),
        next_due: t(at + 100),
    };
    let e = EventDraft::new(
        Actor::User(by.parse().unwrap()),
        None,
        EventKind::RoleAttested {
            role: a.role.clone(),
            hash: a.hash.clone(),
            by: a.by.clone(),
            note: a.note.clone(),
            next_due: a.next_due,
        },
    );
    (a, e)
}

pub(crate) async fn a_content_is_in_force_from_when_it_first_loaded(store: &dyn Store) {
    initialized(store).await;
    let before = store.audit_size().await.unwrap();
    store
        .roles_in_force(&pairs(&[("a", "h1"), ("b", "h1")]), t(1))
        .await
        .unwrap();
    // Loading the same contents again (a restart, another replica) keeps their time.
    store
        .roles_in_force(&pairs(&[("a", "h1"), ("b", "h1")]), t(5))
        .await
        .unwrap();
    let book = store.attestation_book().await.unwrap();
    assert_eq!(book.since("a", "h1"), Some(t(1)));
    assert_eq!(book.since("b", "h1"), Some(t(1)));
    // A changed file starts again; a removed role is forgotten, and starts again if it returns.
    store
        .roles_in_force(&pairs(&[("a", "h2")]), t(7))
        .await
        .unwrap();
    let book = store.attestation_book().await.unwrap();
    assert_eq!(book.since("a", "h1"), None);
    assert_eq!(book.since("a", "h2"), Some(t(7)));
    assert_eq!(book.since("b", "h1"), None);
    store
        .roles_in_force(&pairs(&[("a", "h2"), ("b", "h1")]), t(9))
        .await
        .unwrap();
    let book = store.attestation_book().await.unwrap();
    assert_eq!(book.since("a", "h2"), Some(t(7)));
    assert_eq!(book.since("b", "h1"), Some(t(9)));
    // No event: `role.changed` already says what is in force.
    assert_eq!(store.audit_size().await.unwrap(), before);
}

pub(crate) async fn the_latest_attestation_of_each_content_counts(store: &dyn Store) {
    initialized(store).await;
    let before = store.audit_size().await.unwrap();
    for (role, hash, by, at) in [
        ("a", "h1", "dana", 1),
        ("a", "h1", "erin", 3),
        ("a", "h2", "dana", 2),
        ("b", "h1", "dana", 4),
    ] {
        let (a, e) = attested(role, hash, by, at);
        store.record_attestation(&a, &[e], t(at)).await.unwrap();
    }
    assert_eq!(store.audit_size().await.unwrap(), before + 4);
    let book = store.attestation_book().await.unwrap();
    assert_eq!(book.latest.len(), 3);
    let a1 = book.latest("a", "h1").unwrap();
    assert_eq!((a1.by.as_str(), a1.at, a1.next_due), ("erin", t(3), t(103)));
    assert_eq!(a1.note, "still needed");
    assert_eq!(book.latest("a", "h2").unwrap().by, "dana");
    assert_eq!(book.latest("b", "h1").unwrap().at, t(4));
    assert!(book.latest("b", "h2").is_none());
    let events = store.audit_tail(4).await.unwrap();
    let last = events.last().unwrap().to_json().unwrap();
    assert_eq!(last["type"], "role.attested");
    assert_eq!(last["role"], "b");
}

pub(crate) async fn a_notice_is_sent_once(store: &dyn Store) {
    initialized(store).await;
    let key = NoticeKey {
        role: "a".into(),
        hash: "h1".into(),
        kind: NoticeKind::Due,
        at: t(100),
    };
    let event = EventDraft::new(
        Actor::System("attestations"),
        None,
        EventKind::RoleAttestationDue {
            role: "a".into(),
            hash: "h1".into(),
            owner: "group:o".into(),
            due: t(100),
            last_attested: None,
        },
    );
    let before = store.audit_size().await.unwrap();
    assert!(
        store
            .record_attestation_notice(&key, std::slice::from_ref(&event), t(1))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_attestation_notice(&key, std::slice::from_ref(&event), t(2))
            .await
            .unwrap(),
        "already sent: nothing written"
    );
    assert_eq!(store.audit_size().await.unwrap(), before + 1);
    // Another kind, or another date, is another notice.
    let lapsed = NoticeKey {
        kind: NoticeKind::Lapsed,
        ..key.clone()
    };
    assert!(
        store
            .record_attestation_notice(&lapsed, &[event], t(3))
            .await
            .unwrap()
    );
    let sent = store.attestation_notices().await.unwrap();
    assert_eq!(sent.len(), 2);
    assert!(sent.contains(&key) && sent.contains(&lapsed));
}
