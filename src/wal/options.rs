//! [`WalOptions`], [`FsyncMode`] and [`RecoveryMode`], with their defaults.

use std::time::Duration;

/// When appended records reach stable storage, and so what an acknowledged
/// append survives. See docs/RELIABILITY.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum FsyncMode {
    /// An append returns after an fdatasync covered it: it survives power
    /// loss. Concurrent appends share one fdatasync (group commit).
    Always,
    /// An append returns once write() handed it to the kernel: it survives a
    /// process crash. A timer thread fdatasyncs every `interval`, even when
    /// no further write arrives, so it survives power loss `interval` later.
    Periodic {
        /// Time between two fdatasyncs of the timer.
        interval: Duration,
    },
    /// An append returns once write() handed it to the kernel: it survives a
    /// process crash; the OS decides when it reaches disk. `sync()` and
    /// `close()` still fdatasync.
    Never,
}

impl Default for FsyncMode {
    fn default() -> Self {
        FsyncMode::Periodic { interval: Duration::from_millis(10) }
    }
}

/// What opening a log does about damage it finds (after RocksDB's modes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum RecoveryMode {
    /// A torn or incomplete record (or batch) at the very end of the last
    /// segment is cut off into a quarantine file; anything else is an error.
    #[default]
    TolerateTornTail,
    /// Keep the longest valid prefix; everything after the first anomaly is
    /// moved aside into quarantine files and the log continues.
    PointInTime,
    /// Any anomaly, a torn tail included, is an error; no record byte is
    /// changed (unpublished `*.wal.tmp` spares are still removed).
    AbsoluteConsistency,
}

/// How segment files get their space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Preallocate {
    /// Each segment is written full of zeros to `segment_bytes` before it is
    /// used (by a background thread, ahead of time), so an fdatasync never
    /// has to journal a size change: write+fdatasync of 4 KiB records ran
    /// about 1.3x faster into zero-filled blocks than into a growing file
    /// on this project's ext4. The zeros are written 64 KiB at a time: 1 MiB
    /// writes made ext4 cache the file in large folios, and later small
    /// appends into them ran ~2.5x slower (docs/BENCHMARKS.md).
    #[default]
    ZeroFill,
    /// Segment files grow as records are written.
    Off,
}

impl Preallocate {
    /// Whether segments are zero-filled.
    pub fn zero_fill(self) -> bool {
        self == Preallocate::ZeroFill
    }
}

/// Options of a [`crate::Wal`]. Every field has a documented default.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct WalOptions {
    /// Default: `Periodic { interval: 10ms }`.
    pub fsync: FsyncMode,
    /// A segment is rolled over once the next record would pass this size.
    /// Default 64 MiB. A single batch larger than this gets a segment of its own.
    pub segment_bytes: u64,
    /// The largest payload `append` accepts. Default 16 MiB; at most 128 MiB.
    pub max_record_bytes: u32,
    /// The most bytes of encoded records staged for one write() (one group);
    /// appenders wait when it is full (back-pressure). Default 4 MiB.
    pub group_max_bytes: usize,
    /// The most records in one group. Default 65,536.
    pub group_max_records: usize,
    /// Before an fdatasync, wait this long for more writers to join the
    /// group. Default none: sync at once.
    pub group_delay: Option<Duration>,
    /// How often the background thread writes out records appended through
    /// the pipelined API that nobody is waiting for (and, in `Always` mode,
    /// syncs them). Default 2 ms. `Periodic` uses its interval instead.
    pub flush_interval: Duration,
    /// Whether segment files are zero-filled ahead of use. Default `ZeroFill`.
    pub preallocate: Preallocate,
    /// Default `TolerateTornTail`.
    pub recovery: RecoveryMode,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            fsync: FsyncMode::default(),
            segment_bytes: 64 << 20,
            max_record_bytes: 16 << 20,
            group_max_bytes: 4 << 20,
            group_max_records: 65_536,
            group_delay: None,
            flush_interval: Duration::from_millis(2),
            preallocate: Preallocate::ZeroFill,
            recovery: RecoveryMode::default(),
        }
    }
}

impl WalOptions {
    pub(crate) fn validate(&self) -> crate::Result<()> {
        let bad = |why: &str| Err(crate::Error::InvalidArgument(why.to_owned()));
        if self.segment_bytes < 4096 {
            return bad("segment_bytes must be at least 4096");
        }
        if self.max_record_bytes == 0 || self.max_record_bytes > crate::format::MAX_RECORD_BYTES {
            return bad("max_record_bytes must be between 1 and 128 MiB");
        }
        if self.group_max_bytes < 4096 || self.group_max_records == 0 {
            return bad("group_max_bytes must be at least 4096 and group_max_records at least 1");
        }
        if let FsyncMode::Periodic { interval } = self.fsync {
            if interval.is_zero() {
                return bad("the periodic fsync interval must be above zero");
            }
        }
        if self.flush_interval.is_zero() {
            return bad("flush_interval must be above zero");
        }
        Ok(())
    }
}
