//! Replays every saved fuzz input (`fuzz/corpus/<target>/*`) of the server's targets through the
//! same entry points the fuzz targets call, so CI covers them on stable Rust. A panic, or a stack
//! overflow, fails the test.

#![allow(clippy::panic, reason = "a test fails loudly on anything unexpected")]
use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus `{}`: {e}", dir.display()))
    {
        let path = entry.map(|e| e.path()).unwrap_or_default();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("`{}`: {e}", path.display()));
        run(&data);
        n += 1;
    }
    n
}

#[test]
fn roles_corpus_replays_without_panicking() {
    assert!(replay("roles", breakglass_server::fuzzing::roles) >= 100);
}

#[test]
fn config_corpus_replays_without_panicking() {
    assert!(replay("config", breakglass_server::fuzzing::config) >= 100);
}

#[test]
fn policy_corpus_replays_without_panicking() {
    assert!(replay("policy", breakglass_server::fuzzing::policy) >= 100);
}

#[test]
fn api_corpus_replays_without_panicking() {
    assert!(replay("api", breakglass_server::fuzzing::api) >= 100);
}
