//! [`Lsn`], the log sequence number: the identity of a record in the log.

use std::fmt;

/// A log sequence number. The first record of a log has LSN 1 and every
/// later record the next integer: LSNs are gap-free and never reused.
///
/// `Lsn(0)` never names a record; it stands for "before the first record".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Lsn(pub u64);

impl Lsn {
    /// The LSN of the first record of every log.
    pub const FIRST: Lsn = Lsn(1);
    /// Stands for "before the first record"; names no record.
    pub const ZERO: Lsn = Lsn(0);

    /// The number itself.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The LSN after this one.
    pub fn next(self) -> Lsn {
        Lsn(self.0 + 1)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
