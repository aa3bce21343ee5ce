//! Durations as people write and read them (`90s`, `45m`, `1h30m`) and the default
//! durations both sides share: the daemon's settings and the keyless consumer commands
//! inside the container. Depends on nothing else in the crate.

use std::time::Duration;

pub const DEFAULT_REFRESH_INTERVAL: &str = "45m";
pub const DEFAULT_JITTER: &str = "2m";
pub const DEFAULT_MIN_REMAINING: &str = "10m";
pub const DEFAULT_HTTP_TIMEOUT: &str = "30s";

/// `90s`, `45m`, `1h`, `1h30m`, `500ms`. A bare number is refused: units are not guessed.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const HINT: &str = "expected a duration like 90s, 45m or 1h";
    let s = s.trim();
    if s.is_empty() {
        return Err(HINT.into());
    }
    let mut total_ms: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(HINT.into());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| HINT.to_string())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let ms_per = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(format!("{HINT} (a unit is required)")),
            _ => return Err(HINT.into()),
        };
        rest = &rest[unit_len..];
        total_ms = n
            .checked_mul(ms_per)
            .and_then(|v| total_ms.checked_add(v))
            .filter(|v| *v <= 365 * 86_400_000)
            .ok_or_else(|| "duration is too long (at most a year)".to_string())?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// `2700s` → `45m`, `5400s` → `1h30m`, `1500ms` → `1.5s`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_millis() != 0 || secs == 0 {
        return if secs == 0 {
            format!("{}ms", d.as_millis())
        } else {
            format!("{:.1}s", d.as_secs_f64())
        };
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if s > 0 {
        out += &format!("{s}s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("45m"), Ok(Duration::from_secs(2700)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(
            parse_duration("45")
                .unwrap_err()
                .contains("unit is required")
        );
        assert!(parse_duration("").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn durations_round_trip(secs in 1u64..400_000) {
            let d = Duration::from_secs(secs);
            proptest::prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
