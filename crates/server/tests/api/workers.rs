//! When the workers wake: the reaper sleeps until its next due item, and a grant written with
//! work due sooner moves its alarm forward (the loop itself sleeps on `tokio::time`; here the
//! clock is the manual one and the test runs the passes).

use breakglass_core::Timestamp;
use breakglass_server::workers::reaper;
use serde_json::json;

use crate::harness::Broker;

const MIN: i64 = 60_000;

pub(crate) async fn the_reaper_sleeps_until_its_next_due_item(b: Broker) {
    let next = || async {
        reaper::next_due(&b.app.grants)
            .await
            .unwrap()
            .map(Timestamp::unix_millis)
    };
    let alarm = || b.app.alarms.reaper.due().map(Timestamp::unix_millis);
    assert_eq!(next().await, None, "nothing to do: nothing to wake for");
    assert_eq!(alarm(), None);
    let alice = b.user("alice", &["sre"]).await;
    let bob = b.user("bob", &["sre-leads"]).await;
    let t0 = b.now_ms();

    // A request times out after the role's 10m unless someone approves it.
    let long = b.request(&alice, "30m").await;
    assert_eq!(next().await, Some(t0 + 10 * MIN));
    assert_eq!(alarm(), Some(t0 + 10 * MIN), "the request woke the reaper");

    // Approved, it ends in 30m: later than the reaper expects to wake, so it is left asleep.
    b.advance("1m");
    b.post(&format!("/v1/grants/{long}/approve"), &bob, json!({}))
        .await
        .ok();
    assert_eq!(next().await, Some(t0 + 31 * MIN));
    assert_eq!(alarm(), Some(t0 + 10 * MIN));

    // A grant that ends sooner wakes it.
    let short = b.active(&alice, &bob, "5m").await;
    assert_eq!(next().await, Some(t0 + 6 * MIN));
    assert_eq!(
        alarm(),
        Some(t0 + 6 * MIN),
        "an earlier end moved the alarm"
    );

    // At the first end the reaper has work; after it, the next is the other end.
    b.advance_ms(5 * MIN - 1);
    b.reap().await;
    assert_eq!(b.grant(&short).await["state"], "active");
    b.advance_ms(1);
    b.reap().await;
    assert_eq!(b.grant(&short).await["state"], "expired");
    assert_eq!(next().await, Some(t0 + 31 * MIN));
    b.advance("25m");
    b.reap().await;
    assert_eq!(b.grant(&long).await["state"], "expired");
    assert_eq!(next().await, None, "nothing left to do");
}
