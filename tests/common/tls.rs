//! The test certificate (tests/data/tls: a self-signed one for 127.0.0.1 and localhost) as a
//! TLS server's configuration.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::PrivateKeyDer;
use tokio_rustls::rustls::ServerConfig;

pub fn dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls")
}

/// A server configuration with the test certificate, offering `alpn` (none: no ALPN).
pub fn server_config(alpn: &[&[u8]]) -> Arc<ServerConfig> {
    let cert = std::fs::read(dir().join("selfsigned-cert.der")).unwrap();
    let key = std::fs::read(dir().join("selfsigned-key.der")).unwrap();
    let mut config = ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.into()], PrivateKeyDer::Pkcs8(key.into()))
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}
