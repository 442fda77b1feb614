//! Drills: a drill starts with its grant and their events in one transaction, moves on only over
//! the version it read, reads its alert's deliveries once routed, and a role's overdue date is
//! recorded once.

use breakglass_core::drill::{Drill, DrillId, Probe};
use breakglass_core::{AuditEvent, GrantId, Role};
use breakglass_store::{Store, StoreError};

use super::{initialized, t, user};

const ROLE: &str = r#"
id = "db"
title = "t"
owner = "group:o"
requesters = ["group:sre"]
default_duration = "30m"
max_duration = "1h"
alerts = ["ops"]
[approval]
quorum = 1
approvers = ["group:leads"]
[target]
kind = "token"
audience = "db"
scope = ["x"]
"#;

fn started() -> breakglass_core::drill::DrillStart {
    let role = Role::parse("db.toml", ROLE).unwrap();
    Drill::start(
        DrillId::from_bytes([3; 16]),
        GrantId::from_bytes([4; 16]),
        &role,
        &user("olga", &["o"]),
        false,
        t(2),
    )
    .unwrap()
}

pub(crate) async fn a_drill_starts_with_its_grant_and_moves_on_over_its_version(store: &dyn Store) {
    initialized(store).await;
    let size = store.audit_size().await.unwrap();
    let s = started();
    store
        .start_drill(&s.drill, &s.grant.grant, &s.grant.events, t(2))
        .await
        .unwrap();
    // Both rows and both events, together.
    assert_eq!(store.audit_size().await.unwrap(), size + 2);
    let g = store.grant(s.grant.grant.id).await.unwrap().unwrap();
    assert!(g.grant.drill);
    let sd = store.drill(s.drill.id).await.unwrap().unwrap();
    assert_eq!((sd.drill.clone(), sd.version), (s.drill.clone(), 1));
    assert_eq!(store.open_drills().await.unwrap().len(), 1);
    assert_eq!(store.drills(Some("db"), 10).await.unwrap().len(), 1);
    assert!(store.drills(Some("other"), 10).await.unwrap().is_empty());
    // A drill grant's alert is not routed yet.
    assert_eq!(store.drill_deliveries(g.grant.id).await.unwrap(), None);
    // An update over a stale version changes nothing.
    let mut moved = sd.drill.clone();
    moved.stage = breakglass_core::drill::DrillStage::Exercising;
    let probe = Probe {
        started_at: t(3),
        finished_at: t(3),
        outcome: Ok("ok".into()),
    };
    let next = moved.exercised(&probe, t(3)).unwrap().drill;
    let stored = store.update_drill(&next, 1, &[], t(3)).await.unwrap();
    assert_eq!(stored.version, 2);
    assert!(matches!(
        store.update_drill(&next, 1, &[], t(4)).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.drill(s.drill.id).await.unwrap().unwrap().version, 2);
}

pub(crate) async fn a_drill_reads_its_alerts_deliveries_once_routed(store: &dyn Store) {
    initialized(store).await;
    let s = started();
    store
        .start_drill(&s.drill, &s.grant.grant, &s.grant.events, t(2))
        .await
        .unwrap();
    let to_ops = |_: &AuditEvent| Some(vec!["ops".to_owned()]);
    while store.route_alerts(10, &to_ops, t(3)).await.unwrap() > 0 {}
    let d = store
        .drill_deliveries(s.grant.grant.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].channel.as_str(), d[0].delivered_at), ("ops", None));
    for c in store.claim_deliveries(t(4), 60_000, 10, &[]).await.unwrap() {
        store.delivery_succeeded(c.id, t(5)).await.unwrap();
    }
    let d = store
        .drill_deliveries(s.grant.grant.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d[0].delivered_at, Some(t(5)));
}

pub(crate) async fn an_overdue_date_is_recorded_once(store: &dyn Store) {
    initialized(store).await;
    let roles = vec!["db".to_owned()];
    let s = store.drill_schedule(&roles, t(10)).await.unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].first_seen, s[0].alerted_due), (t(10), None));
    // Seen again later, it keeps its first sighting.
    let s = store.drill_schedule(&roles, t(20)).await.unwrap();
    assert_eq!(s[0].first_seen, t(10));
    let size = store.audit_size().await.unwrap();
    let event = super::note(breakglass_core::EventKind::DrillOverdue {
        role: "db".into(),
        due: t(30),
        last_passed: None,
    });
    assert!(
        store
            .record_drill_overdue("db", t(30), std::slice::from_ref(&event), t(31))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_drill_overdue("db", t(30), &[event], t(32))
            .await
            .unwrap()
    );
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
    assert_eq!(
        store.drill_schedule(&[], t(33)).await.unwrap()[0].alerted_due,
        Some(t(30))
    );
}
