//! `walden bench-recovery`'s memory: what /proc says a process holds, and
//! the guard that decides, before a comparison starts, whether it fits in
//! the memory the machine has free. A comparison that would not fit is
//! skipped with a line saying so, never left to the kernel's OOM killer.
//!
//! **Invariant:** the decision is made from an estimate and MemAvailable
//! alone ([`decide`] is a pure function, unit-tested at 10M and 100M keys),
//! before anything is allocated for the comparison.

/// Left free beside every estimate: the bench's own process, the page
/// cache the comparison reads through, the rest of the machine.
pub const RESERVE_BYTES: u64 = 1 << 30;

/// What a comparison is expected to hold at its peak, per raw key and
/// value byte (16 B key + 100 B value = 116 B a key). Measured at 1M and
/// 10M keys on 2026-12-03 (docs/BENCHMARKS.md), rounded up for the peak
/// of the last table resize and the allocator's slack.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Comparison {
    /// The raw write() log replayed into a `HashMap<Vec<u8>, Vec<u8>>`:
    /// 1.96x-2.18x after, plus the old table while the last resize copies.
    RawReplay,
    /// SQLite's rows into a `HashMap<Vec<u8>, (Vec<u8>, u64, String, u64)>`: 3.2x.
    SqliteHashMap,
    /// SQLite's rows into an `imbl::OrdMap<StoreKey, Entry>`: 2.8x.
    SqliteOrdMap,
}

impl Comparison {
    /// The peak this comparison is expected to reach, for `raw_bytes` of keys and values.
    pub fn estimate_bytes(self, raw_bytes: u64) -> u64 {
        let per_raw_byte = match self {
            Comparison::RawReplay => 2.4,
            Comparison::SqliteHashMap => 3.6,
            Comparison::SqliteOrdMap => 3.2,
        };
        (raw_bytes as f64 * per_raw_byte) as u64
    }
}

/// Whether a step that needs `estimate_bytes` at its peak may start.
#[derive(Clone, Debug, PartialEq)]
pub enum Fit {
    Run,
    /// Skipped, and why (a line for the report).
    Skip(String),
}

/// Runs iff the estimate plus [`RESERVE_BYTES`] is within what the kernel
/// says is available (MemAvailable). If MemAvailable cannot be read, runs
/// (the bench cannot know better; the line printed at start says so).
pub fn decide(what: &str, estimate_bytes: u64, available_bytes: Option<u64>) -> Fit {
    match available_bytes {
        Some(available) if estimate_bytes.saturating_add(RESERVE_BYTES) > available => Fit::Skip(format!(
            "{what}: skipped, it needs about {} at its peak (with {} left free) and {} is available (MemAvailable)",
            gib(estimate_bytes),
            gib(RESERVE_BYTES),
            gib(available)
        )),
        _ => Fit::Run,
    }
}

pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// MemAvailable from /proc/meminfo, in bytes.
pub fn mem_available_bytes() -> Option<u64> {
    parse_kb_field(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemAvailable:")
}

/// A `Name:   123 kB` field of a /proc file, in bytes.
pub fn parse_kb_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Fields of /proc/self/status given in kB, in bytes (0 if absent).
pub fn status<const N: usize>(names: &[&str; N]) -> [u64; N] {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    names.map(|name| parse_kb_field(&text, name).unwrap_or(0))
}

/// Gives the heap's free pages back to the kernel (glibc's malloc_trim),
/// so that a state this process built and dropped does not stay resident
/// while a child process opens its own copy of it.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes an integer and only walks the allocator's
    // own free lists; nothing of ours is touched.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const RAW_PER_KEY: u64 = 116;

    /// This machine's MemAvailable with nothing else running (24 GiB of
    /// RAM, 23.4 GiB available), as `free` shows it.
    const AVAILABLE_24_GIB_MACHINE: u64 = 23 * GIB + 400 * (1 << 20);

    #[test]
    fn at_100m_keys_the_map_comparisons_are_skipped_on_a_24_gib_machine() {
        let raw = 100_000_000 * RAW_PER_KEY;
        for c in [Comparison::RawReplay, Comparison::SqliteHashMap, Comparison::SqliteOrdMap] {
            let fit = decide("x", c.estimate_bytes(raw), Some(AVAILABLE_24_GIB_MACHINE));
            let Fit::Skip(line) = fit else { panic!("{c:?} at 100M keys runs: {fit:?}") };
            assert!(line.starts_with("x: skipped, it needs about "), "{line}");
            assert!(line.contains("and 23.4 GiB is available (MemAvailable)"), "{line}");
        }
        // The raw replay's estimate: 27.8 GB for 11.6 GB of keys and values.
        assert_eq!(Comparison::RawReplay.estimate_bytes(raw), 27_840_000_000);
    }

    #[test]
    fn at_10m_keys_every_comparison_runs_and_a_full_machine_skips_them() {
        let raw = 10_000_000 * RAW_PER_KEY;
        for c in [Comparison::RawReplay, Comparison::SqliteHashMap, Comparison::SqliteOrdMap] {
            assert_eq!(decide("x", c.estimate_bytes(raw), Some(AVAILABLE_24_GIB_MACHINE)), Fit::Run, "{c:?}");
            // With a 100M-key store held elsewhere (about 17 GiB), 6 GiB is left.
            let fit = decide("x", c.estimate_bytes(raw), Some(3 * GIB));
            assert!(matches!(fit, Fit::Skip(_)), "{c:?} with 3 GiB available: {fit:?}");
        }
        // Exactly at the edge: the reserve counts.
        let need = Comparison::RawReplay.estimate_bytes(raw);
        assert_eq!(decide("x", need, Some(need + RESERVE_BYTES)), Fit::Run);
        assert!(matches!(decide("x", need, Some(need + RESERVE_BYTES - 1)), Fit::Skip(_)));
        // MemAvailable unreadable: the bench cannot know, and runs.
        assert_eq!(decide("x", u64::MAX, None), Fit::Run);
    }

    #[test]
    fn meminfo_fields_parse_in_bytes() {
        let meminfo = "MemTotal:       24609884 kB\nMemFree:        23001234 kB\nMemAvailable:   23456789 kB\n";
        assert_eq!(parse_kb_field(meminfo, "MemAvailable:"), Some(23_456_789 * 1024));
        assert_eq!(parse_kb_field(meminfo, "SwapTotal:"), None);
        assert!(mem_available_bytes().is_some_and(|b| b > 0), "this is Linux: /proc/meminfo has MemAvailable");
    }
}
