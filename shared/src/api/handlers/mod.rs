//! The route handlers, one async function per Lambda function, grouped by resource.

pub mod event_types;
pub mod me;
pub mod webhooks;
