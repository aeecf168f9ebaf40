//! Recovery of a one-segment log; see `walden::fuzz_targets::open_segment`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| walden::fuzz_targets::open_segment(data));
