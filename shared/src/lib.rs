//! The webhooks service: every piece of logic the Lambda binaries and the local stack run.
//!
//! - [`domain`]: API keys, event types, webhooks and their validation
//! - [`storage`]: the DynamoDB item layout and every call to the table
//! - [`api`]: route registry, request parsing, handlers, errors on the wire
//! - [`auth`]: the Lambda authorizer's logic
//! - [`netguard`]: the SSRF guard
//! - [`lambda`]: the doorways the binaries in `functions/` call
//! - [`local`]: the local stack (emulator, provisioning from template.yaml, HTTP server)
//! - [`admin`]: API key management for the `webhooks-admin` command

/// Every binary that links this crate allocates with mimalloc: the fan-out allocates
/// and frees many small buffers across threads, and glibc's malloc took 15% of its CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod admin;
pub mod api;
pub mod auth;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod ids;
pub mod lambda;
pub mod local;
pub mod netguard;
pub mod queue;
pub mod signing;
pub mod state;
pub mod storage;
pub mod tls;
