//! Human durations such as `26h`, `7d`, `90m` or `1h30m` (RPO, keepWithin, deadlines).

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as a sum of `<n><unit>` with units `s`, `m`, `h`, `d`, `w`
/// (for example `26h`, `7d`, `1h30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration {
    seconds: u64,
}

/// A duration string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: write it as a number and a unit, e.g. 26h, 7d, 90m, 1h30m")]
pub struct DurationError {
    input: String,
}

impl HumanDuration {
    /// A duration of `seconds` seconds.
    pub const fn from_secs(seconds: u64) -> Self {
        Self { seconds }
    }

    /// Length in seconds.
    pub const fn as_secs(self) -> u64 {
        self.seconds
    }

    /// As a `std::time::Duration`.
    pub const fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.seconds)
    }

    /// As a chrono duration (saturating).
    pub fn to_chrono(self) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(i64::try_from(self.seconds).unwrap_or(i64::MAX / 1000))
    }
}

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DurationError {
            input: s.to_string(),
        };
        let text = s.trim();
        if text.is_empty() {
            return Err(err());
        }
        let mut total: u64 = 0;
        let mut number = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let unit: u64 = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 7 * 86_400,
                _ => return Err(err()),
            };
            let n: u64 = number.parse().map_err(|_| err())?;
            number.clear();
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(err)?;
        }
        if !number.is_empty() {
            return Err(err());
        }
        Ok(Self { seconds: total })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.seconds;
        if rest == 0 {
            return f.write_str("0s");
        }
        // Whole days read as days; anything else starts at hours (26h stays 26h).
        if rest % 86_400 == 0 {
            return write!(f, "{}d", rest / 86_400);
        }
        for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
            if rest >= size {
                write!(f, "{}{}", rest / size, unit)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HumanDuration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+[smhdw])+$",
            "description": "A duration such as 26h, 7d, 90m or 1h30m."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(
            "26h".parse::<HumanDuration>().map(|d| d.as_secs()),
            Ok(93_600)
        );
        assert_eq!(
            "1h30m".parse::<HumanDuration>().map(|d| d.as_secs()),
            Ok(5_400)
        );
        assert_eq!(
            "2w".parse::<HumanDuration>().map(|d| d.as_secs()),
            Ok(1_209_600)
        );
        assert_eq!("45s".parse::<HumanDuration>().map(|d| d.as_secs()), Ok(45));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "h", "26", "1.5h", "-3d", "3 days", "1y"] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn displays_round_trip() {
        for text in ["26h", "7d", "1h30m", "50h3m4s"] {
            let d: HumanDuration = text.parse().expect("parses");
            assert_eq!(d.to_string(), text);
        }
    }
}
