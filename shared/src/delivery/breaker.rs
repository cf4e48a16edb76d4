//! The slow lane: one tenant's dead endpoints must not hold the deliver function's
//! concurrency for every event it publishes. Per webhook, in each instance:
//! - a **circuit breaker**: after [`TRIP_AFTER`] attempts in a row with no HTTP answer
//!   (timed out, refused, unreachable) it opens for a cooldown (30 s, doubling on every
//!   failed probe up to 5 minutes). While it is open, new deliveries to the webhook are not
//!   attempted: they are recorded pending and queued as retry tasks due when it closes,
//!   and retry tasks that come early are parked. When the cooldown is over, one attempt at
//!   a time goes through as a probe; an answer (any status: the endpoint is reachable)
//!   closes the breaker, no answer opens it again for longer.
//! - a **cap on requests in flight** ([`MAX_IN_FLIGHT_PER_WEBHOOK`]): beyond it, new
//!   deliveries to that webhook wait a few seconds as retry tasks instead of piling up.
//!
//! A deferral is not an attempt: the delivery's attempt count and log do not move. The
//! state is the instance's own (no storage read per request), so a new instance learns
//! again from the first attempts it makes; each instance holds at most one probe per
//! webhook at a time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

/// Attempts in a row without an answer that open a webhook's breaker.
pub const TRIP_AFTER: u32 = 3;
/// How long a breaker stays open the first time.
pub const FIRST_COOLDOWN: Duration = Duration::from_secs(30);
/// The longest it stays open (each failed probe doubles the cooldown up to this).
pub const LONGEST_COOLDOWN: Duration = Duration::from_secs(300);
/// Requests one instance has in flight to one webhook before it defers the next.
pub const MAX_IN_FLIGHT_PER_WEBHOOK: usize = 32;
/// How long a delivery deferred by the cap waits.
pub const BUSY_WAIT: Duration = Duration::from_secs(5);
/// How long a delivery waits while a probe is out (about one request's timeout).
pub const PROBE_WAIT: Duration = Duration::from_secs(15);
/// A probe not reported by then was lost (its invocation cut off): another may go.
const PROBE_DEADLINE: Duration = Duration::from_secs(40);

/// One webhook's breaker.
#[derive(Debug)]
struct State {
    unanswered: u32,
    open_until: Option<Instant>,
    cooldown: Duration,
    probing_since: Option<Instant>,
    in_flight: usize,
}

impl Default for State {
    fn default() -> Self {
        State {
            unanswered: 0,
            open_until: None,
            cooldown: FIRST_COOLDOWN,
            probing_since: None,
            in_flight: 0,
        }
    }
}

/// Whether an attempt may be made now.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go: a probe when the breaker is half open.
    Go { probe: bool },
    /// Not now.
    Defer(Hold),
}

/// How long a held-back delivery waits: `wait`, plus a random share of `spread`. The
/// spread keeps the deliveries held back together from all coming back at the same moment
/// (when a cooldown or a probe ends), each costing a message to receive while the other
/// tenants' messages wait behind them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    pub wait: Duration,
    pub spread: Duration,
}

/// The longest spread of the held-back deliveries' return.
pub const LONGEST_SPREAD: Duration = Duration::from_secs(60);

impl Hold {
    /// Waits `wait`, spread over half as long again (at most [`LONGEST_SPREAD`]).
    fn spread_over_half(wait: Duration) -> Hold {
        Hold {
            wait,
            spread: (wait / 2).min(LONGEST_SPREAD),
        }
    }

    /// The wait with `random` (in `[0, 1]`) of the spread.
    pub fn with_share(self, random: f64) -> Duration {
        self.wait + self.spread.mul_f64(random.clamp(0.0, 1.0))
    }
}

impl State {
    fn enter(&mut self, now: Instant) -> Decision {
        if let Some(until) = self.open_until {
            if now < until {
                // Spread over half the cooldown, not half what is left of it: the
                // deliveries held back late in a cooldown would otherwise all come back
                // within a moment of its end.
                return Decision::Defer(Hold {
                    wait: until - now,
                    spread: Hold::spread_over_half(self.cooldown).spread,
                });
            }
            if self
                .probing_since
                .is_some_and(|since| now.duration_since(since) < PROBE_DEADLINE)
            {
                return Decision::Defer(Hold::spread_over_half(PROBE_WAIT));
            }
            self.probing_since = Some(now);
            self.in_flight += 1;
            return Decision::Go { probe: true };
        }
        if self.in_flight >= MAX_IN_FLIGHT_PER_WEBHOOK {
            return Decision::Defer(Hold::spread_over_half(BUSY_WAIT));
        }
        self.in_flight += 1;
        Decision::Go { probe: false }
    }

    /// An attempt ended: `answered` if the endpoint sent an HTTP response. Returns
    /// whether the breaker opened (or closed) because of it.
    fn report(&mut self, probe: bool, answered: bool, now: Instant) -> Option<Change> {
        self.in_flight = self.in_flight.saturating_sub(1);
        if probe {
            self.probing_since = None;
        }
        if answered {
            self.unanswered = 0;
            self.cooldown = FIRST_COOLDOWN;
            return self.open_until.take().map(|_| Change::Closed);
        }
        self.unanswered += 1;
        if probe {
            self.cooldown = (self.cooldown * 2).min(LONGEST_COOLDOWN);
            self.open_until = Some(now + self.cooldown);
            return Some(Change::Opened(self.cooldown));
        }
        if self.open_until.is_none() && self.unanswered >= TRIP_AFTER {
            self.open_until = Some(now + self.cooldown);
            return Some(Change::Opened(self.cooldown));
        }
        None
    }

    /// A permit dropped without a report (its invocation was cut off).
    fn abandon(&mut self, probe: bool) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if probe {
            self.probing_since = None;
        }
    }

    fn idle(&self) -> bool {
        self.unanswered == 0 && self.open_until.is_none() && self.in_flight == 0
    }
}

/// What a report changed.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    Opened(Duration),
    Closed,
}

type Key = (String, String);

/// Every webhook's breaker in this instance (only those with something to remember).
#[derive(Default)]
pub struct Breakers {
    states: Mutex<HashMap<Key, State>>,
}

/// Leave to make one attempt: report its outcome (dropping it unreported frees its place).
pub struct Permit<'b> {
    breakers: &'b Breakers,
    key: Key,
    probe: bool,
    reported: bool,
}

/// Whether an attempt to a webhook may be made now.
pub enum Gate<'b> {
    Go(Permit<'b>),
    Defer(Hold),
}

impl Breakers {
    fn states(&self) -> MutexGuard<'_, HashMap<Key, State>> {
        self.states.lock()
    }

    /// Asks to make one attempt to a webhook now.
    pub fn enter(&self, tenant_id: &str, webhook_id: &str) -> Gate<'_> {
        let key = (tenant_id.to_string(), webhook_id.to_string());
        let decision = self
            .states()
            .entry(key.clone())
            .or_default()
            .enter(Instant::now());
        match decision {
            Decision::Go { probe } => Gate::Go(Permit {
                breakers: self,
                key,
                probe,
                reported: false,
            }),
            Decision::Defer(hold) => Gate::Defer(hold),
        }
    }

    /// How many breakers are open in this instance (a gauge for the metrics).
    pub fn open(&self) -> usize {
        let now = Instant::now();
        self.states()
            .values()
            .filter(|s| s.open_until.is_some_and(|until| until > now))
            .count()
    }
}

impl Permit<'_> {
    /// The attempt ended; `answered` if the endpoint sent an HTTP response.
    pub fn report(mut self, answered: bool) {
        self.reported = true;
        let mut states = self.breakers.states();
        let Some(state) = states.get_mut(&self.key) else {
            return;
        };
        let change = state.report(self.probe, answered, Instant::now());
        let (tenant_id, webhook_id) = (&self.key.0, &self.key.1);
        match change {
            Some(Change::Opened(cooldown)) => tracing::warn!(
                %tenant_id,
                %webhook_id,
                cooldown_s = cooldown.as_secs(),
                "circuit breaker open: the webhook does not answer; its deliveries wait as retry tasks"
            ),
            Some(Change::Closed) => {
                tracing::info!(%tenant_id, %webhook_id, "circuit breaker closed: the webhook answers again")
            }
            None => {}
        }
        if state.idle() {
            states.remove(&self.key);
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported {
            let mut states = self.breakers.states();
            if let Some(state) = states.get_mut(&self.key) {
                state.abandon(self.probe);
                if state.idle() {
                    states.remove(&self.key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens the breaker at `now`: attempts in a row with no answer.
    fn trip(state: &mut State, now: Instant) {
        for _ in 0..TRIP_AFTER {
            go(state, now);
            state.report(false, false, now);
        }
    }

    fn go(state: &mut State, now: Instant) -> bool {
        match state.enter(now) {
            Decision::Go { probe } => probe,
            Decision::Defer(d) => panic!("deferred {d:?}"),
        }
    }

    #[test]
    fn unanswered_attempts_in_a_row_open_it_and_an_answer_resets_the_count() {
        let t0 = Instant::now();
        let mut s = State::default();
        for _ in 0..TRIP_AFTER - 1 {
            assert!(!go(&mut s, t0));
            assert_eq!(s.report(false, false, t0), None);
        }
        go(&mut s, t0);
        assert_eq!(
            s.report(false, true, t0),
            None,
            "an answer resets the count"
        );
        for _ in 0..TRIP_AFTER - 1 {
            go(&mut s, t0);
            s.report(false, false, t0);
        }
        go(&mut s, t0);
        assert_eq!(
            s.report(false, false, t0),
            Some(Change::Opened(FIRST_COOLDOWN))
        );
        let spread = FIRST_COOLDOWN / 2;
        assert_eq!(
            s.enter(t0),
            Decision::Defer(Hold {
                wait: FIRST_COOLDOWN,
                spread
            })
        );
        let later = t0 + Duration::from_secs(10);
        assert_eq!(
            s.enter(later),
            Decision::Defer(Hold {
                wait: FIRST_COOLDOWN - Duration::from_secs(10),
                spread
            }),
            "what is left of the cooldown, spread over half the cooldown"
        );
    }

    #[test]
    fn after_the_cooldown_one_probe_at_a_time_closes_or_reopens_it_for_longer() {
        let t0 = Instant::now();
        let mut s = State::default();
        trip(&mut s, t0);
        let t1 = t0 + FIRST_COOLDOWN;
        assert!(go(&mut s, t1), "the first after the cooldown is a probe");
        assert_eq!(
            s.enter(t1),
            Decision::Defer(Hold {
                wait: PROBE_WAIT,
                spread: PROBE_WAIT / 2
            }),
            "one probe at a time"
        );
        assert_eq!(
            s.report(true, false, t1),
            Some(Change::Opened(FIRST_COOLDOWN * 2))
        );
        let t2 = t1 + FIRST_COOLDOWN * 2;
        assert!(go(&mut s, t2));
        assert_eq!(s.report(true, true, t2), Some(Change::Closed));
        assert!(!go(&mut s, t2), "closed: no probe");
        assert!(s.cooldown == FIRST_COOLDOWN);
        // The cooldown stops growing at its longest.
        let mut t = t2;
        trip(&mut s, t);
        for _ in 0..10 {
            t += LONGEST_COOLDOWN;
            if go(&mut s, t) {
                s.report(true, false, t);
            }
        }
        assert_eq!(s.cooldown, LONGEST_COOLDOWN);
    }

    #[test]
    fn a_hold_adds_a_share_of_its_spread_and_the_spread_is_bounded() {
        let hold = Hold::spread_over_half(Duration::from_secs(15));
        assert_eq!(hold.with_share(0.0), Duration::from_secs(15));
        assert_eq!(hold.with_share(1.0), Duration::from_millis(22_500));
        assert_eq!(hold.with_share(7.0), Duration::from_millis(22_500));
        let long = Hold::spread_over_half(LONGEST_COOLDOWN);
        assert_eq!(long.spread, LONGEST_SPREAD);
    }

    #[test]
    fn a_lost_probe_lets_another_go_after_its_deadline() {
        let t0 = Instant::now();
        let mut s = State::default();
        trip(&mut s, t0);
        let t1 = t0 + FIRST_COOLDOWN;
        assert!(go(&mut s, t1));
        assert!(matches!(
            s.enter(t1 + Duration::from_secs(5)),
            Decision::Defer(_)
        ));
        assert!(go(&mut s, t1 + PROBE_DEADLINE));
    }

    #[test]
    fn requests_in_flight_are_capped_per_webhook_and_freed_when_dropped() {
        let breakers = Breakers::default();
        let permits: Vec<Permit<'_>> = (0..MAX_IN_FLIGHT_PER_WEBHOOK)
            .map(|_| match breakers.enter("t", "w") {
                Gate::Go(p) => p,
                Gate::Defer(_) => panic!("under the cap"),
            })
            .collect();
        assert!(matches!(
            breakers.enter("t", "w"),
            Gate::Defer(Hold {
                wait: BUSY_WAIT,
                ..
            })
        ));
        assert!(matches!(breakers.enter("t", "other"), Gate::Go(_)));
        drop(permits);
        assert!(matches!(breakers.enter("t", "w"), Gate::Go(_)));
        assert!(breakers.states().is_empty(), "nothing left to remember");
    }

    #[test]
    fn open_breakers_are_counted() {
        let breakers = Breakers::default();
        for _ in 0..TRIP_AFTER {
            if let Gate::Go(p) = breakers.enter("t", "dead") {
                p.report(false);
            }
        }
        if let Gate::Go(p) = breakers.enter("t", "fine") {
            p.report(true);
        }
        assert_eq!(breakers.open(), 1);
        assert!(matches!(breakers.enter("t", "dead"), Gate::Defer(_)));
    }
}
