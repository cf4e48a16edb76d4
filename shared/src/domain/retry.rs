//! The retry schedule: how long to wait after each failed attempt, and how a receiver's
//! `Retry-After` is read.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::duration::parse_duration;

/// Waits after attempts 1, 2, ... (SPEC: 5s, 5m, 30m, 2h, 5h, 10h, 10h: eight attempts
/// over about 27 hours). `RETRY_SCHEDULE` replaces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

pub const DEFAULT_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";

/// The most a wait is stretched at random, so that retries of many deliveries spread out.
pub const MAX_JITTER: f64 = 0.2;

/// SQS's longest delay on a message: the first hop of every wait.
pub const MAX_QUEUE_DELAY: Duration = Duration::from_secs(15 * 60);

/// The longest a received message is parked (its visibility timeout): SQS counts at most
/// 12 hours from the receive, which happened a little before the park (a batch runs for
/// at most the deliver function's 3 minutes).
pub const MAX_PARK: Duration = Duration::from_secs(12 * 3600 - 5 * 60);

/// The longest step a schedule may have: with its jitter, what the first delay and one
/// park can hold.
pub fn longest_parkable_step() -> Duration {
    (MAX_QUEUE_DELAY + MAX_PARK).div_f64(1.0 + MAX_JITTER)
}

impl RetrySchedule {
    /// Parses `5s,5m,30m,2h`: whole numbers with `ms`, `s`, `m`, `h` or `d`. A step whose
    /// jittered wait is longer than SQS can hold a message (its 15-minute delay, then 12
    /// hours of visibility) is refused: such a retry could never be parked.
    pub fn parse(text: &str) -> Result<Self, String> {
        let waits = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(parse_duration)
            .collect::<Result<Vec<_>, _>>()?;
        let longest = longest_parkable_step();
        if let Some((i, step)) = waits.iter().enumerate().find(|(_, w)| **w > longest) {
            return Err(format!(
                "step {} ({}) waits up to {} with its 20% jitter, longer than SQS can hold a \
                 message (a 15-minute delay, then at most 12 hours hidden): the longest step \
                 is {}",
                i + 1,
                crate::duration::format_duration(*step),
                crate::duration::format_duration(step.mul_f64(1.0 + MAX_JITTER)),
                crate::duration::format_duration(longest),
            ));
        }
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

    /// The longest wait of the schedule: a receiver's `Retry-After` is honoured up to this
    /// and never beyond.
    pub fn longest_wait(&self) -> Duration {
        self.0.iter().max().copied().unwrap_or_default()
    }

    /// The wait with jitter: stretched by a random share in `[0, MAX_JITTER]`, and never
    /// shorter than the receiver's `Retry-After` as far as the schedule's longest wait.
    pub fn next_wait(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        random: f64,
    ) -> Option<Duration> {
        let base = self.wait_after(attempt)?;
        let share = if random.is_finite() {
            random.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let jittered = base.mul_f64(1.0 + MAX_JITTER * share);
        let asked = retry_after.map_or(Duration::ZERO, |ra| ra.min(self.longest_wait()));
        Some(jittered.max(asked))
    }

    /// When the attempt after attempt `attempt` (made at `at`) is due, or `None` when it was
    /// the last. Never later than the latest time a record can hold.
    pub fn next_attempt_at(
        &self,
        attempt: u32,
        at: DateTime<Utc>,
        retry_after: Option<Duration>,
        random: f64,
    ) -> Option<DateTime<Utc>> {
        let wait = self.next_wait(attempt, retry_after, random)?;
        Some(super::later(at, wait))
    }
}

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule::parse(DEFAULT_SCHEDULE).expect("the default schedule parses")
    }
}

/// Reads `Retry-After`: delay-seconds, or an HTTP date. Any value a receiver sends is read
/// without panicking; the schedule bounds what is honoured ([`RetrySchedule::next_wait`]).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    at.with_timezone(&Utc)
        .signed_duration_since(now)
        .to_std()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_step_sqs_cannot_park_is_refused_naming_it() {
        // The default's 10 h steps fit: 12 h jittered, 15 min of delay then 11 h 45 min.
        assert!(RetrySchedule::parse(DEFAULT_SCHEDULE).is_ok());
        assert!(RetrySchedule::parse("608m").is_ok());
        let error = RetrySchedule::parse("5s,609m").unwrap_err();
        assert!(error.contains("step 2 (10h9m)"), "{error}");
        assert!(error.contains("the longest step is 10h8m20s"), "{error}");
        assert!(RetrySchedule::parse("1d").is_err());
        // Whatever a step, its longest jittered wait fits one delay and one park.
        let longest = longest_parkable_step();
        assert!(longest.mul_f64(1.0 + MAX_JITTER) <= MAX_QUEUE_DELAY + MAX_PARK);
    }

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
        let s = RetrySchedule::parse("10s,2m").unwrap();
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
        assert_eq!(s.next_wait(3, None, 0.0), None);
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_longest_wait_and_never_beyond() {
        let s = RetrySchedule::parse("1s,1m,10m").unwrap();
        assert_eq!(s.longest_wait(), Duration::from_secs(600));
        let huge = Some(Duration::from_secs(9_000_000_000_000));
        assert_eq!(s.next_wait(1, huge, 0.0), Some(Duration::from_secs(600)));
        assert_eq!(
            s.next_wait(1, Some(Duration::from_secs(120)), 0.0),
            Some(Duration::from_secs(120))
        );
        let at = chrono::DateTime::parse_from_rfc3339("9999-12-31T23:55:00Z")
            .unwrap()
            .to_utc();
        let next = s.next_attempt_at(3, at, huge, 1.0).unwrap();
        assert_eq!(next, crate::domain::latest_time());
        assert!(s.next_wait(1, None, f64::NAN).is_some());
    }

    #[test]
    fn waits_past_a_year_are_refused_not_overflowed() {
        for bad in ["18446744073709551615d", "366d", "9000000h"] {
            assert!(RetrySchedule::parse(bad).is_err(), "{bad}");
        }
        // A year is a duration; no schedule may wait that long (SQS could not park it).
        assert!(crate::duration::parse_duration("365d").is_ok());
        assert!(RetrySchedule::parse("365d").is_err());
    }

    fn retry_after_values() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{0,25}",
            ".{0,40}",
            (0i64..253_402_300_799).prop_map(|s| chrono::DateTime::from_timestamp(s, 0)
                .unwrap_or_default()
                .to_rfc2822()),
        ]
    }

    proptest! {
        /// Whatever a receiver sends and whenever it happens, the next attempt falls within
        /// the schedule and its time survives the record's round trip through text.
        #[test]
        fn any_retry_after_any_attempt_any_clock_stays_in_the_schedule(
            header in retry_after_values(),
            attempt in 0u32..12,
            clock_ms in 0i64..=253_402_300_799_999,
            random in proptest::num::f64::ANY,
        ) {
            let schedule = RetrySchedule::default();
            let at = chrono::DateTime::from_timestamp_millis(clock_ms).unwrap();
            let retry_after = parse_retry_after(&header, at);
            let next = schedule.next_attempt_at(attempt, at, retry_after, random);
            prop_assert_eq!(next.is_some(), (1..schedule.max_attempts()).contains(&attempt));
            if let Some(next) = next {
                let longest = schedule.longest_wait().mul_f64(1.0 + MAX_JITTER);
                let wait = (next - at).to_std().unwrap();
                prop_assert!(wait <= longest, "{wait:?}");
                prop_assert!(
                    next == crate::domain::latest_time()
                        || wait >= schedule.wait_after(attempt).unwrap()
                );
                let text = crate::domain::format_time(next);
                prop_assert_eq!(crate::domain::parse_time(&text), Some(next));
            }
        }
    }

    #[test]
    fn schedules_parse_units_and_refuse_nonsense() {
        let s = RetrySchedule::parse("200ms, 1s,2m,1h,10h").unwrap();
        assert_eq!(s.wait_after(1), Some(Duration::from_millis(200)));
        assert_eq!(s.wait_after(5), Some(Duration::from_secs(36000)));
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
