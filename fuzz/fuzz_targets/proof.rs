//! Inclusion and consistency proof documents: decoding and checking never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| breakglass_audit::fuzzing::proof(data));
