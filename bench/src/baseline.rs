//! The figures of the first layout, measured by this bench (the honest meter) at commit
//! fa55685 on 2026-11-23, before the second stage's layout: what `make bench` prints beside
//! today's figures. Units do not depend on the build or the machine; they come from the
//! stub's bill.

/// Write units per delivery, indexes included, at fan-out factors 1, 5 and 100.
pub const WRITE_UNITS_PER_DELIVERY: [(usize, f64); 3] = [(1, 12.0), (5, 4.0), (100, 2.1)];
/// All-in cost per million deliveries at factor 5 (USD).
pub const ALL_IN_USD: f64 = 3.457;
/// One tenant at factor 5: events/s and deliveries/s before a key is throttled.
pub const TENANT_EVENTS_PER_S: f64 = 167.0;
pub const TENANT_DELIVERIES_PER_S: f64 = 833.0;
/// A webhook failing every attempt: deliveries/s before a key is throttled.
pub const FAILING_WEBHOOK_DELIVERIES_PER_S: f64 = 83.0;

/// The first layout's write units per delivery at `factor`.
pub fn write_units(factor: usize) -> Option<f64> {
    WRITE_UNITS_PER_DELIVERY
        .iter()
        .find(|(f, _)| *f == factor)
        .map(|(_, w)| *w)
}
