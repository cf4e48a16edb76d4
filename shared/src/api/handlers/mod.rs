//! The route handlers, one async function per Lambda function, grouped by resource.

pub mod deliveries;
pub mod event_types;
pub mod events;
pub mod me;
pub mod oauth;
pub mod portal_sessions;
pub mod recover;
pub mod replay;
pub mod webhooks;
