//! Record and segment-header decoding; see `walden::fuzz_targets::decode_record`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| walden::fuzz_targets::decode_record(data));
