//! One TLS stack for every client in a process: rustls with the ring crypto provider.
//!
//! The AWS SDK's HTTPS client (`state::sdk_config`) and the delivery client both use it,
//! so a binary links one crypto library (aws-lc-rs, the defaults' choice, added about
//! 1.5 MB to each).

use std::sync::Once;

/// Makes ring the process's rustls provider, which reqwest picks up when a client is built.
/// Idempotent; every reqwest client in the workspace is built after a call to it.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Err means another provider is already installed; that one is then used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A plain reqwest client (tools, tests, benchmarks), built on the same TLS stack, which
/// never goes through a proxy from the environment (everything it calls is on loopback or
/// named by the operator).
pub fn http_client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client with no proxy builds")
}
