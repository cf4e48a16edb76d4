//! The retry schedule: how long to wait after each failed attempt.

use std::time::Duration;

/// Waits after attempts 1, 2, ... (SPEC: 5s, 5m, 30m, 2h, 5h, 10h, 10h: eight attempts
/// over about 27 hours). `RETRY_SCHEDULE` replaces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

pub const DEFAULT_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";

/// The most a wait is stretched at random, so that retries of many deliveries spread out.
pub const MAX_JITTER: f64 = 0.2;

impl RetrySchedule {
    /// Parses `5s,5m,30m,2h`: whole numbers with `ms`, `s`, `m`, `h` or `d`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let waits = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(parse_duration)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RetrySchedule(waits))
    }

    /// How many attempts a delivery gets in all.
    pub fn max_attempts(&self) -> u32 {
        self.0.len() as u32 + 1
    }

    /// The wait after attempt `attempt` (1-based) failed, before jitter; `None` when it was
    /// the last.
    pub fn wait_after(&self, attempt: u32) -> Option<Duration> {
        self.0.get(attempt.checked_sub(1)? as usize).copied()
    }

    /// The wait with jitter: stretched by a random share in `[0, MAX_JITTER]`, and never
    /// shorter than the receiver's `Retry-After`.
    pub fn next_wait(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        random: f64,
    ) -> Option<Duration> {
        let base = self.wait_after(attempt)?;
        let jittered = base.mul_f64(1.0 + MAX_JITTER * random.clamp(0.0, 1.0));
        Some(retry_after.map_or(jittered, |ra| ra.max(jittered)))
    }
}

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule::parse(DEFAULT_SCHEDULE).expect("the default schedule parses")
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a wait like 5s, 5m or 2h"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("{text:?}: the unit must be ms, s, m, h or d")),
    };
    Ok(Duration::from_secs(seconds))
}

/// Reads `Retry-After`: delay-seconds, or an HTTP date.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&chrono::Utc) - now).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_is_the_specs() {
        let s = RetrySchedule::default();
        assert_eq!(s.max_attempts(), 8);
        assert_eq!(s.wait_after(1), Some(Duration::from_secs(5)));
        assert_eq!(s.wait_after(2), Some(Duration::from_secs(300)));
        assert_eq!(s.wait_after(7), Some(Duration::from_secs(36000)));
        assert_eq!(s.wait_after(8), None);
        assert_eq!(s.wait_after(0), None);
        let total: u64 = (1..8).map(|a| s.wait_after(a).unwrap().as_secs()).sum();
        assert_eq!(total, 5 + 300 + 1800 + 7200 + 18000 + 36000 + 36000); // about 27 h
    }

    #[test]
    fn jitter_stretches_by_at_most_a_fifth_and_retry_after_wins_when_longer() {
        let s = RetrySchedule::parse("10s").unwrap();
        assert_eq!(s.next_wait(1, None, 0.0), Some(Duration::from_secs(10)));
        assert_eq!(s.next_wait(1, None, 1.0), Some(Duration::from_secs(12)));
        assert_eq!(
            s.next_wait(1, Some(Duration::from_secs(60)), 0.5),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            s.next_wait(1, Some(Duration::from_secs(1)), 0.0),
            Some(Duration::from_secs(10))
        );
        assert_eq!(s.next_wait(2, None, 0.0), None);
    }

    #[test]
    fn schedules_parse_units_and_refuse_nonsense() {
        let s = RetrySchedule::parse("200ms, 1s,2m,1h,1d").unwrap();
        assert_eq!(s.wait_after(1), Some(Duration::from_millis(200)));
        assert_eq!(s.wait_after(5), Some(Duration::from_secs(86400)));
        for bad in ["5x", "s", "-1s", "1.5s"] {
            assert!(RetrySchedule::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(RetrySchedule::parse("").unwrap().max_attempts(), 1);
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
