//! The tools side of the service: what runs it on a developer's machine and what operators
//! run, never linked into a Lambda function.
//!
//! - [`local`]: the local stack (the emulator, the table and queues provisioned from
//!   template.yaml, the API server with the authorizer in front, the queue pollers that
//!   drive `deliver`), used by `make run`, the end-to-end tests and the bench
//! - [`admin`]: API key management for `webhooks-admin` and the local dev key
//! - [`smoke`]: `make smoke`, the whole path checked against a stack from outside

pub mod admin;
pub mod local;
pub mod smoke;
