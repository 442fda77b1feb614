//! What the in-process benchmarks share: signing people in the way a real one starts (an
//! administrator adds them with a one-time password, they choose their own and enrol an
//! authenticator), so that step-up-guarded calls work.

use serde_json::{Value, json};

/// A POST that must succeed; `token` `None` for signing in.
pub(crate) async fn post(
    http: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> Value {
    let mut req = http.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "{status}: {v}");
    v
}

/// The current TOTP code of a base32 secret.
pub(crate) fn code(secret_b32: &str) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret_b32).unwrap();
    let now = std::time::UNIX_EPOCH.elapsed().unwrap().as_secs();
    breakglass_server::signin::crypto::totp::code_at(secret.as_bytes(), now)
}

/// Enrols an authenticator for the holder of `token`, which also steps the token up.
pub(crate) async fn enroll(http: &reqwest::Client, base: &str, token: &str) {
    let e = post(
        http,
        format!("{base}/v1/totp/enroll"),
        Some(token),
        json!({}),
    )
    .await;
    let c = code(e["secret"].as_str().unwrap());
    post(
        http,
        format!("{base}/v1/totp/confirm"),
        Some(token),
        json!({ "code": c }),
    )
    .await;
}

/// Adds `name` (the `admin` token must be stepped up), signs them in with a password of their
/// own and, if `totp`, enrols an authenticator. Returns their session token and password.
pub(crate) async fn person(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    name: &str,
    groups: &[&str],
    totp: bool,
) -> (String, String) {
    let added = post(
        http,
        format!("{base}/v1/users"),
        Some(admin),
        json!({ "name": name, "groups": groups }),
    )
    .await;
    let password = format!("correct-horse-battery-staple-{}", groups.len());
    let s = post(
        http,
        format!("{base}/v1/login"),
        None,
        json!({
            "user": name,
            "password": added["initial_password"],
            "new_password": password,
        }),
    )
    .await;
    let token = s["token"].as_str().unwrap().to_owned();
    if totp {
        enroll(http, base, &token).await;
    }
    (token, password)
}
