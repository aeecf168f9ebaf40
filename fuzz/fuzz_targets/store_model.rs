//! Store operations, faults and crashes against a model; see `walden::fuzz_targets::store_model`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| walden::fuzz_targets::store_model(data));
