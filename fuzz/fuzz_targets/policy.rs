//! One custom Cedar policy file, loaded and validated as at start and on reload, then asked for
//! decisions: never panics, never overflows the stack.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| breakglass_server::fuzzing::policy(data));
