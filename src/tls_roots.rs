//! The roots HTTPS connections trust: the built-in Web PKI roots (reqwest's, from the
//! `webpki-roots` crate) and those of the PEM bundle `SSL_CERT_FILE` names.

use std::sync::OnceLock;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::RootCertStore;

/// The certificates of the PEM bundle `SSL_CERT_FILE` names, trusted besides the built-in Web
/// PKI roots (a TLS-inspecting proxy, a model server with a private CA). Read once, when the
/// first client is built (`tls_config`); a file that cannot be used is logged and leaves the
/// built-in roots, and so is a certificate in it that is no trust anchor (the root store would
/// not take it: the warning says which one, instead of it being dropped unseen).
fn extra_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        std::env::var_os("SSL_CERT_FILE")
            .filter(|p| !p.is_empty())
            .map(|path| read_roots(&path))
            .unwrap_or_default()
    })
}

fn read_roots(path: &std::ffi::OsStr) -> Vec<CertificateDer<'static>> {
    let warn = |e: String| {
        crate::log::warn(
            "SSL_CERT_FILE is not used: only the built-in roots are trusted",
            &[
                ("path", path.to_string_lossy().into_owned().into()),
                ("error", e.into()),
            ],
        );
        Vec::new()
    };
    let pem = match std::fs::read(path) {
        Ok(pem) => pem,
        Err(e) => return warn(e.to_string()),
    };
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    let certs = match certs {
        Ok(certs) if certs.is_empty() => return warn("it holds no PEM certificate".to_owned()),
        Ok(certs) => certs,
        Err(e) => return warn(e.to_string()),
    };
    let mut usable = Vec::with_capacity(certs.len());
    for (i, c) in certs.into_iter().enumerate() {
        match RootCertStore::empty().add(c.clone()) {
            Ok(()) => usable.push(c),
            Err(e) => crate::log::warn(
                "SSL_CERT_FILE: a certificate that is no trust anchor is left out",
                &[
                    ("path", path.to_string_lossy().into_owned().into()),
                    ("certificate", (i + 1).into()),
                    ("error", e.to_string().into()),
                ],
            ),
        }
    }
    usable
}

/// The roots every HTTPS connection trusts: the built-in Web PKI ones (as reqwest's) and those
/// of `SSL_CERT_FILE`.
pub fn trusted() -> RootCertStore {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for c in extra_roots() {
        let _ = roots.add(c.clone());
    }
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_keeps_its_trust_anchors_and_leaves_out_what_is_none() {
        let dir = std::env::temp_dir().join(format!("llmr-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/tls/selfsigned-cert.pem"),
        )
        .unwrap();
        // A PEM block that decodes, but to no certificate.
        let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let bundle = dir.join("bundle.pem");
        std::fs::write(&bundle, format!("{bad}{good}")).unwrap();
        let kept = read_roots(bundle.as_os_str());
        assert_eq!(kept.len(), 1);
        assert!(RootCertStore::empty().add(kept[0].clone()).is_ok());

        // No certificate at all, or no file: nothing added.
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a PEM file").unwrap();
        assert!(read_roots(empty.as_os_str()).is_empty());
        assert!(read_roots(dir.join("missing.pem").as_os_str()).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
