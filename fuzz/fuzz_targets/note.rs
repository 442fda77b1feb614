//! Signed notes, checkpoints and verifier keys: parsing never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| breakglass_audit::fuzzing::note(data));
