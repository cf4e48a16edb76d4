//! The per-tenant API rate limit (SPEC §6, `TENANT_RATE_LIMIT`): a generic cell rate
//! algorithm, whose whole state is one time per tenant (the theoretical arrival time, TAT).
//! A request is admitted when the TAT is at most `burst - 1` intervals ahead of now, and
//! moves it one interval on; so a tenant gets `rate` requests a second sustained, `burst`
//! at once from rest. Storage keeps the TAT with a conditional write shared by every
//! instance (`storage::LimitStore`).

/// A rate and its burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests a second, sustained.
    pub rate: u32,
    /// Requests at once from rest.
    pub burst: u32,
}

impl RateLimit {
    /// `rate` a second with bursts of twice that (SPEC §6).
    pub fn per_second(rate: u32) -> Self {
        RateLimit {
            rate: rate.max(1),
            burst: rate.max(1).saturating_mul(2),
        }
    }

    /// Microseconds between two requests at the sustained rate.
    pub fn interval_us(&self) -> i64 {
        1_000_000 / i64::from(self.rate.max(1))
    }

    /// How far ahead of now the TAT may be for a request to be admitted.
    pub fn tolerance_us(&self) -> i64 {
        self.interval_us() * i64::from(self.burst.max(1) - 1)
    }
}

/// What became of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Admitted; the tenant's TAT is now this (Unix microseconds).
    Admitted { tat: i64 },
    /// Over the limit: admitted again in this many microseconds.
    Refused { retry_after_us: i64 },
}

/// The decision the storage's conditional writes make, in memory: admits a request at
/// `now` against the stored `tat` (`None`: never seen, or expired).
pub fn admit(limit: &RateLimit, tat: Option<i64>, now: i64) -> Admission {
    let tat = tat.unwrap_or(now).max(now);
    if tat - now > limit.tolerance_us() {
        Admission::Refused {
            retry_after_us: tat - limit.tolerance_us() - now,
        }
    } else {
        Admission::Admitted {
            tat: tat + limit.interval_us(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_twice_the_rate_then_the_rate_itself() {
        let limit = RateLimit::per_second(50);
        let mut tat = None;
        let now = 1_000_000_000;
        let mut admitted = 0;
        for _ in 0..150 {
            if let Admission::Admitted { tat: next } = admit(&limit, tat, now) {
                tat = Some(next);
                admitted += 1;
            }
        }
        assert_eq!(admitted, 100, "a burst of 100 at once");
        let Admission::Refused { retry_after_us } = admit(&limit, tat, now) else {
            panic!("the 101st waits");
        };
        assert_eq!(retry_after_us, limit.interval_us());
        // A second later: 50 more.
        let later = now + 1_000_000;
        let mut more = 0;
        for _ in 0..100 {
            if let Admission::Admitted { tat: next } = admit(&limit, tat, later) {
                tat = Some(next);
                more += 1;
            }
        }
        assert_eq!(more, 50);
    }
}
