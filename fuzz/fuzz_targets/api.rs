//! Every API request body (the first byte picks which), read and checked as its handler does:
//! never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| breakglass_server::fuzzing::api(data));
