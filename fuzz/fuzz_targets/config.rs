//! The config file (`[alerts]`, `[channels.NAME]`, `[client_certs]`) and the roles' fit to it:
//! never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| breakglass_server::fuzzing::config(data));
