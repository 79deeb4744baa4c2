//! Durations as people write them in lifecycle files and annotations: `500ms`, `5s`,
//! `2m`, `1h`.

use std::time::Duration;

use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serializer};

/// The longest duration [`parse_duration`] reads: Go's longest, `2562047h47m16.854s`
/// (about 292 years), as Kubernetes reads durations. Delays, jitter and waits added up
/// or added to a clock then stay far from overflowing.
pub const MAX_DURATION: Duration = Duration::from_millis(9_223_372_036_854);

/// What a duration must look like, for error messages.
pub(crate) const EXPECTED_DURATION: &str =
    "a whole number and a unit, such as 500ms, 5s, 2m or 1h (at most 2562047h)";

/// Parses a whole number followed by `ms`, `s`, `m` or `h`, at most [`MAX_DURATION`];
/// `None` otherwise.
///
/// ```
/// use std::time::Duration;
/// use hollow_core::lifecycle::parse_duration;
///
/// assert_eq!(parse_duration("1500ms"), Some(Duration::from_millis(1500)));
/// assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
/// assert_eq!(parse_duration("soon"), None);
/// assert_eq!(parse_duration("2562048h"), None); // longer than Go's longest duration
/// ```
pub fn parse_duration(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = raw.split_at(split);
    let number: u64 = number.parse().ok()?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.checked_mul(60)?),
        "h" => Duration::from_secs(number.checked_mul(3600)?),
        _ => return None,
    };
    (duration <= MAX_DURATION).then_some(duration)
}

/// The shortest text [`parse_duration`] reads back as `duration` (milliseconds kept).
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(3_600_000) && millis > 0 {
        format!("{}h", millis / 3_600_000)
    } else if millis.is_multiple_of(60_000) && millis > 0 {
        format!("{}m", millis / 60_000)
    } else if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

/// `serde(with = ...)` for one duration.
pub(crate) mod text {
    use super::*;

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(*duration))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let raw = String::deserialize(deserializer)?;
        parse_duration(&raw).ok_or_else(|| {
            D::Error::custom(format!(
                "invalid duration {raw:?}: expected {EXPECTED_DURATION}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_format_back() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration(" 2m "), Some(Duration::from_secs(120)));
        for bad in [
            "",
            "5",
            "s",
            "1.5s",
            "5 s",
            "-1s",
            "3d",
            "2562048h",
            "9223372036855ms",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        for text in [
            "0s",
            "250ms",
            "1500ms",
            "5s",
            "2m",
            "90s",
            "1h",
            "2562047h",
            "9223372036854ms",
        ] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(format_duration(parsed), text);
        }
    }
}
