//! The per-request limits of the router as `serve` runs it: the request deadline answers `503
//! timeout` in the API's envelope while the handler is still working, and HSTS is on every
//! answer of an HTTPS broker (and on none of the bare router's).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use breakglass_server::api;
use breakglass_server::config::Limits;
use serde_json::Value;
use tower::ServiceExt as _;

use crate::harness::Broker;

pub(crate) async fn a_request_past_its_deadline_gets_503_and_https_answers_carry_hsts(b: Broker) {
    let limits = Limits {
        // Signing in costs an Argon2id hash, far longer than this.
        request_timeout: Duration::from_millis(1),
        ..Limits::default()
    };
    let router = api::serving_router(Arc::clone(&b.app), &limits, true);
    let login = || {
        Request::builder()
            .method("POST")
            .uri("/v1/login")
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"user": "nobody", "password": "wrong password"}"#,
            ))
            .unwrap()
    };
    let resp = router.clone().oneshot(login()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "timeout", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("the broker did not finish this request within "),
        "{v}"
    );
    assert!(
        v["error"]["help"]
            .as_str()
            .unwrap()
            .contains("may or may not have taken effect"),
        "{v}"
    );
    // A quick answer is not cut, and carries HSTS too.
    let health = Request::builder()
        .uri("/healthz")
        .body(Body::empty())
        .unwrap();
    let generous = api::serving_router(Arc::clone(&b.app), &Limits::default(), true);
    let resp = generous.oneshot(health).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().contains_key("strict-transport-security"));
    // The bare router (and a plain HTTP broker) sends no HSTS.
    let bare = api::router(Arc::clone(&b.app));
    let resp = bare.oneshot(login()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(!resp.headers().contains_key("strict-transport-security"));
}
