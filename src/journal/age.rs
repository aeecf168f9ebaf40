//! [`parse_age`]: durations written like `7d`, `12h`, `1h30m`, `500ms`.

use crate::{Error, Result};
use std::time::Duration;

/// Parses a duration: one or more `<integer><unit>` terms, added up, with
/// units `ms`, `s`, `m` (minutes), `h`, `d` (24 h) and `w` (7 d). Examples:
/// `7d`, `36h`, `1h30m`, `90s`. Anything else is an error that says why.
pub fn parse_age(text: &str) -> Result<Duration> {
    let bad = |why: String| Error::InvalidArgument(format!("malformed duration {text:?}: {why}"));
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad("it is empty (write e.g. 7d, 12h, 30m)".into()));
    }
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad(format!("expected a number at {rest:?}")));
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad("the number is too large".into()))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "" => return Err(bad(format!("{number} has no unit (ms, s, m, h, d or w)"))),
            other => return Err(bad(format!("unknown unit {other:?} (ms, s, m, h, d or w)"))),
        };
        rest = &rest[unit_len..];
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| bad("it overflows".into()))?;
    }
    Ok(Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_and_bad_ones_say_why() {
        assert_eq!(parse_age("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_age("1h30m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse_age("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_age("2w").unwrap(), Duration::from_secs(14 * 86_400));
        for bad in ["", "7", "d", "7x", "1.5h", "-3d", "99999999999999999999d"] {
            assert!(parse_age(bad).unwrap_err().to_string().contains("malformed duration"), "{bad:?}");
        }
    }
}
