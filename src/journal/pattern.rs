//! Address patterns and address validation.
//!
//! An address is `/` followed by one or more non-empty segments separated
//! by `/` (`/lights/kitchen/brightness`), with no `*` in it. A pattern is
//! written the same way, except that a segment may be `*`, which matches
//! exactly one segment, or `**`, which matches any number of segments,
//! zero included (`/lights/**` matches `/lights` and `/lights/a/b`). The
//! pattern `/**` matches every address. A `*` inside a segment (`/a*`) is
//! malformed, as is an empty segment (`//`, a trailing `/`).

use crate::{Error, Result};

/// The longest address or pattern accepted, in bytes (it is stored with a
/// u16 length).
pub const MAX_ADDRESS_BYTES: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`
    One,
    /// `**`
    Any,
}

/// A validated address pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    segments: Vec<Segment>,
    /// The pattern has no wildcard: matching is one string comparison.
    exact: bool,
}

fn split(what: &str, text: &str) -> Result<Vec<String>> {
    let bad = |why: &str| Error::InvalidArgument(format!("malformed {what} {text:?}: {why}"));
    if text.len() > MAX_ADDRESS_BYTES {
        return Err(bad(&format!("longer than {MAX_ADDRESS_BYTES} bytes")));
    }
    let Some(rest) = text.strip_prefix('/') else {
        return Err(bad("it must start with '/'"));
    };
    let parts: Vec<String> = rest.split('/').map(str::to_owned).collect();
    if let Some(i) = parts.iter().position(|p| p.is_empty()) {
        return Err(bad(&format!("segment {} is empty", i + 1)));
    }
    Ok(parts)
}

/// Checks that `address` is a valid address (no wildcards).
pub fn validate_address(address: &str) -> Result<()> {
    for part in split("address", address)? {
        if part.contains('*') {
            return Err(Error::InvalidArgument(format!(
                "malformed address {address:?}: '*' is only allowed in patterns"
            )));
        }
    }
    Ok(())
}

impl Pattern {
    /// Parses and validates a pattern; a malformed one is an
    /// [`Error::InvalidArgument`] that says what is wrong.
    pub fn parse(text: &str) -> Result<Pattern> {
        let mut segments = Vec::new();
        for part in split("pattern", text)? {
            let segment = match part.as_str() {
                "*" => Segment::One,
                "**" => Segment::Any,
                literal if literal.contains('*') => {
                    return Err(Error::InvalidArgument(format!(
                        "malformed pattern {text:?}: segment {literal:?} mixes '*' with other characters \
                         (a wildcard must be a whole segment: '*' or '**')"
                    )))
                }
                literal => Segment::Literal(literal.to_owned()),
            };
            // `**/**` is the same as `**`: keep one, so matching stays linear.
            if !(segment == Segment::Any && segments.last() == Some(&Segment::Any)) {
                segments.push(segment);
            }
        }
        let exact = segments.iter().all(|s| matches!(s, Segment::Literal(_)));
        Ok(Pattern { text: text.to_owned(), segments, exact })
    }

    /// The pattern that matches every address.
    pub fn all() -> Pattern {
        Pattern::parse("/**").expect("a valid pattern")
    }

    /// The pattern as it was written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `address` matches. Linear in the address for patterns with
    /// one `**`; at worst (segments x pattern segments).
    pub fn matches(&self, address: &str) -> bool {
        if self.exact {
            return address == self.text;
        }
        if self.segments == [Segment::Any] {
            return address.starts_with('/'); // `/**`: every address
        }
        let Some(rest) = address.strip_prefix('/') else {
            return false;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        // Wildcard matching with backtracking to the last `**` (as for `*`
        // in file globs, with segments for characters).
        let (mut p, mut a) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while a < parts.len() {
            match self.segments.get(p) {
                Some(Segment::Any) => {
                    star = Some((p, a));
                    p += 1;
                }
                Some(Segment::One) => {
                    p += 1;
                    a += 1;
                }
                Some(Segment::Literal(l)) if l == parts[a] => {
                    p += 1;
                    a += 1;
                }
                _ => match star {
                    Some((sp, sa)) => {
                        p = sp + 1;
                        a = sa + 1;
                        star = Some((sp, sa + 1));
                    }
                    None => return false,
                },
            }
        }
        self.segments[p..].iter().all(|s| *s == Segment::Any)
    }
}

impl std::str::FromStr for Pattern {
    type Err = Error;

    fn from_str(s: &str) -> Result<Pattern> {
        Pattern::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_documented() {
        let cases: &[(&str, &str, bool)] = &[
            ("/a/b", "/a/b", true),
            ("/a/b", "/a/c", false),
            ("/a/*", "/a/b", true),
            ("/a/*", "/a", false),
            ("/a/*", "/a/b/c", false),
            ("/a/**", "/a", true),
            ("/a/**", "/a/b/c", true),
            ("/a/**", "/ab", false),
            ("/**", "/x/y", true),
            ("/**/c", "/a/b/c", true),
            ("/**/c", "/c", true),
            ("/**/c", "/a/c/d", false),
            ("/a/**/d/*", "/a/b/c/d/e", true),
            ("/a/**/d/*", "/a/d/d/e", true),
            ("/a/**/d/*", "/a/b/d", false),
            ("/*/b/**", "/x/b", true),
            ("/a/**/**/b", "/a/b", true),
        ];
        for &(pattern, address, expected) in cases {
            assert_eq!(Pattern::parse(pattern).unwrap().matches(address), expected, "{pattern} vs {address}");
        }
    }

    #[test]
    fn malformed_patterns_and_addresses_are_refused_with_a_reason() {
        for bad in ["", "a/b", "/a//b", "/a/", "/a*", "/a/b**", "/"] {
            let err = Pattern::parse(bad).unwrap_err().to_string();
            assert!(err.contains("malformed pattern"), "{bad:?}: {err}");
        }
        assert!(validate_address("/a/*").is_err());
        assert!(validate_address("/a/b").is_ok());
        assert!(validate_address(&format!("/{}", "x".repeat(MAX_ADDRESS_BYTES))).is_err());
    }
}
