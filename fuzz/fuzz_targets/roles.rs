//! Role files (up to three, split at NUL bytes), their checks and generated policies: never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| breakglass_server::fuzzing::roles(data));
