//! Recovery of a mutated store directory; see `walden::fuzz_targets::open_mutated_store`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| walden::fuzz_targets::open_mutated_store(data));
