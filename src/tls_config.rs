//! The TLS settings of every HTTPS connection llmr opens, built once.
//!
//! Each runtime has HTTP clients of its own (the shared runtime's, one per caller runtime:
//! see `caller_runtime`), and reqwest builds a client's TLS settings from scratch: its root
//! store, certificate verifier and a 256-server session cache, ~110 KiB and ~160 µs per client
//! (session 20, bench/README.md). Here they are built once and every client, and the HTTP/2
//! probe, gets a clone — which shares them (`Arc`s inside `rustls::ClientConfig`). Sharing the
//! session cache also lets a connection resume a TLS session another client's connection made:
//! a new caller runtime's first HTTPS request skips the certificate chain's verification.

use std::sync::{Arc, OnceLock};

use tokio_rustls::rustls;

/// Offers HTTP/2 and HTTP/1.1 (ALPN): the settings of the clients that speak either, and of
/// the probe that asks an origin which one it speaks.
pub fn h2_or_http1() -> rustls::ClientConfig {
    shared().clone()
}

/// Offers HTTP/2 only: the clients of origins known to speak it.
pub fn h2_only() -> rustls::ClientConfig {
    let mut c = shared().clone();
    c.alpn_protocols = vec![b"h2".to_vec()];
    c
}

/// What reqwest 0.12 would build for a client (its `rustls-tls` defaults: TLS 1.2 and 1.3,
/// the process's default crypto provider or else ring, SNI on, no client certificate), with
/// the roots llmr trusts (`tls_roots`).
fn shared() -> &'static rustls::ClientConfig {
    static CONFIG: OnceLock<rustls::ClientConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .expect("the crypto provider supports TLS 1.2 and 1.3")
            .with_root_certificates(crate::tls_roots::trusted())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    })
}
