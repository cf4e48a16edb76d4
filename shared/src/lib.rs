//! The webhooks service as the Lambda functions run it (the local stack in `tools` runs the
//! very same handlers). Imports point down: domain <- storage, queue, signing <- delivery,
//! api <- lambda.
//!
//! - [`domain`]: API keys, events, deliveries, event types, webhooks, the retry schedule
//!   and the validation rules, with the domain's own error ([`domain::invalid`])
//! - [`storage`]: the storage ports, on DynamoDB ([`storage::dynamo`], the one home of the
//!   item layout) and in memory ([`storage::memory`], for unit tests)
//! - [`queue`]: the SQS message shapes and the queue port, on SQS and in memory
//! - [`signing`]: both signature schemes
//! - [`delivery`]: the `deliver` function: fan-out, retries, pages, decisions, health
//! - [`api`]: route registry, request parsing, handlers, errors on the wire
//! - [`auth`]: the Lambda authorizer's logic
//! - [`netguard`]: the SSRF guard
//! - [`config`], [`duration`], [`page`], [`ids`], [`json`], [`tls`], [`state`]: settings,
//!   durations in settings, pages of lists, typed ids, JSON sizes, the one TLS stack, what a
//!   process builds once
//! - [`lambda`]: the doorways the binaries in `functions/` call

/// Every binary that links this crate allocates with mimalloc: the fan-out allocates
/// and frees many small buffers across threads, and glibc's malloc took 15% of its CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod activity;
pub mod api;
pub mod auth;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod duration;
pub mod ids;
pub mod json;
pub mod lambda;
pub mod netguard;
pub mod page;
pub mod portal_files;
pub mod queue;
pub mod schemas;
pub mod secrets;
pub mod signing;
pub mod smoke;
pub mod state;
pub mod storage;
pub mod tls;
pub mod tokens;
