//! The snapshot decoder; see `walden::fuzz_targets::decode_snapshot`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| walden::fuzz_targets::decode_snapshot(data));
