//! Durations as operators write them: `30s`, `10m`, `4h`, `7d`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::DomainError;

/// A positive length of time with second resolution, parsed from `<n>s|m|h|d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    secs: i64,
}

/// No single duration in breakglass may exceed this (a year); anything longer is a typo or an
/// attempt at standing privilege.
const MAX_SECS: i64 = 366 * 24 * 3600;

impl Duration {
    pub const fn from_secs(secs: i64) -> Self {
        Self { secs }
    }

    pub const fn as_secs(self) -> i64 {
        self.secs
    }

    pub const fn as_millis(self) -> i64 {
        self.secs.saturating_mul(1000)
    }

    pub fn saturating_add(self, other: Duration) -> Self {
        Self {
            secs: self.secs.saturating_add(other.secs),
        }
    }
}

impl FromStr for Duration {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || DomainError::InvalidDuration {
            input: s.chars().take(40).collect(),
        };
        let t = s.trim();
        let unit_at = t.len().checked_sub(1).ok_or_else(invalid)?;
        let (num, unit) = t.split_at_checked(unit_at).ok_or_else(invalid)?;
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) || num.len() > 9 {
            return Err(invalid());
        }
        let n: i64 = num.parse().map_err(|_| invalid())?;
        let mult = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(invalid()),
        };
        let secs = n.checked_mul(mult).ok_or_else(invalid)?;
        if secs == 0 || secs > MAX_SECS {
            return Err(invalid());
        }
        Ok(Self { secs })
    }
}

impl fmt::Display for Duration {
    /// The largest unit that divides exactly, so `5400s` prints as `90m` and parses back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.secs;
        if s != 0 && s % 86_400 == 0 {
            write!(f, "{}d", s / 86_400)
        } else if s != 0 && s % 3600 == 0 {
            write!(f, "{}h", s / 3600)
        } else if s != 0 && s % 60 == 0 {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!("30s".parse::<Duration>().unwrap().as_secs(), 30);
        assert_eq!("10m".parse::<Duration>().unwrap().as_secs(), 600);
        assert_eq!("4h".parse::<Duration>().unwrap().as_secs(), 14_400);
        assert_eq!("30d".parse::<Duration>().unwrap().as_secs(), 2_592_000);
    }

    #[test]
    fn rejects_garbage_with_the_input_named() {
        for bad in [
            "",
            "m",
            "10",
            "10x",
            "-5m",
            "1.5h",
            "0s",
            "400d",
            "99999999999h",
            "5 m",
        ] {
            let err = bad.parse::<Duration>().unwrap_err();
            assert!(err.to_string().contains("invalid duration"), "{bad}: {err}");
        }
        let err = "10x".parse::<Duration>().unwrap_err();
        assert_eq!(err.to_string(), "invalid duration `10x`");
        assert!(err.help().contains("30s"));
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        for (s, want) in [
            ("5400s", "90m"),
            ("120m", "2h"),
            ("48h", "2d"),
            ("61s", "61s"),
        ] {
            assert_eq!(s.parse::<Duration>().unwrap().to_string(), want);
        }
    }
}
