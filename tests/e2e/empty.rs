//! The end-to-end tests live in `e2e/main.rs`; this library is empty.
