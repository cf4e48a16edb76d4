//! End-to-end tests: each starts the local stack (the real handlers behind the real
//! authorizer, DynamoDB's wire protocol against the local emulator) and drives the API over
//! HTTP on 127.0.0.1. Run by `make test`, which starts the emulator.

// Test code: an unwrap that fails is a failing test, with its location.
#![allow(clippy::unwrap_used)]

mod auth;
mod binaries;
mod commands;
mod consistency;
mod controls;
mod delivery;
mod event_types;
mod fairness;
mod faults;
mod hardening;
mod hostile;
mod listing;
mod newcomer;
mod oauth;
mod portal;
mod receiver;
mod storage_faults;
mod trust;
mod utils;
mod webhooks;
