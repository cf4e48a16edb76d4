//! Durations in settings: `200ms`, `5s`, `5m`, `2h`, `1d`. The retry schedule and the
//! auto-disable window both read them.

use std::time::Duration;

/// The longest wait a schedule (or any duration setting) may name: a year. Bounded so that
/// no arithmetic on a wait can overflow.
pub const LONGEST_SETTING: Duration = Duration::from_secs(365 * 86400);

/// Parses one duration: a whole number with `ms`, `s`, `m`, `h` or `d`, at most a year.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a wait like 5s, 5m or 2h"))?;
    let wait = match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        "d" => n.checked_mul(86400).map(Duration::from_secs),
        _ => return Err(format!("{text:?}: the unit must be ms, s, m, h or d")),
    };
    wait.filter(|w| *w <= LONGEST_SETTING)
        .ok_or_else(|| format!("{text:?} is longer than a year"))
}

/// A duration as a person reads it: `10h8m20s`, `5m`, `250ms`.
pub fn format_duration(d: Duration) -> String {
    let total = d.as_secs();
    if total == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    let mut text = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            text.push_str(&format!("{n}{unit}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_back_as_a_person_writes_them() {
        assert_eq!(format_duration(Duration::from_secs(36500)), "10h8m20s");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn durations_take_units_and_refuse_nonsense() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("5d"), Ok(Duration::from_secs(5 * 86400)));
        for bad in [
            "",
            "5",
            "5x",
            "s",
            "-1s",
            "1.5s",
            "5d,1h",
            "366d",
            "18446744073709551615d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
