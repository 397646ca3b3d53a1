//! Durations as users write them (`90s`, `15m`, `2h`, `30d`, `1h 30m`), through `humantime`.

use std::time::Duration;

/// Parses a positive whole number of seconds written with units, as `humantime` reads them.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let d = humantime::parse_duration(text).map_err(|e| {
        format!("'{text}' is not a duration ({e}); write it like 90s, 15m, 2h, 30d or 1h 30m")
    })?;
    if d.is_zero() {
        return Err(format!("'{text}' is zero; a duration must be positive"));
    }
    if d.subsec_nanos() != 0 {
        return Err(format!("'{text}' is not a whole number of seconds"));
    }
    Ok(d)
}

/// Parses an interval, which may be under a second (`200ms`, `1s`, `1.5s`), at least 10 ms.
pub(crate) fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("'{text}' is not a duration ({e}); write it like 200ms, 1s or 2m"))?;
    if d < Duration::from_millis(10) {
        return Err(format!("'{text}' is under 10ms"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_may_be_under_a_second() {
        assert_eq!(parse_interval("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse_interval("1.5s").unwrap(), Duration::from_millis(1500));
        for bad in ["", "5ms", "0s", "soon"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_duration("2h").unwrap().as_secs(), 7200);
        assert_eq!(parse_duration("30d").unwrap().as_secs(), 2_592_000);
        assert_eq!(parse_duration("1h 30m").unwrap().as_secs(), 5_400);
        assert_eq!(parse_duration("1w").unwrap().as_secs(), 604_800);
        assert_eq!(parse_duration("1.5h").unwrap().as_secs(), 5_400);
        for bad in ["", "10", "d", "soon", "1.5s", "-3s", "0s", "500ms", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
