//! TLS for Arca's own PostgreSQL connections (server probe, exported snapshot, row counts,
//! restores), with libpq's `sslmode` meanings, so Arca connects wherever `pg_dump` does:
//!
//! | sslMode | TLS | certificate |
//! |---|---|---|
//! | `disable` | never | - |
//! | `allow`, `prefer` (default) | when the server offers it | not checked (as libpq) |
//! | `require` | always | not checked, unless a root certificate is found (then as `verify-ca`, as libpq) |
//! | `verify-ca` | always | signed by a trusted CA |
//! | `verify-full` | always | signed by a trusted CA and issued for the host |
//!
//! Trusted CAs come from where libpq looks: `PGSSLROOTCERT` (a PEM file, or `system` for
//! the system's store), else `~/.postgresql/root.crt`. The child tools inherit the same
//! environment, so both sides agree.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How Arca's own connections use TLS for one `sslMode`.
pub enum TlsSetting {
    /// Plain TCP.
    Off,
    /// TLS (`mode` says whether it may fall back to plain TCP).
    On {
        /// `Prefer` or `Require`.
        mode: SslMode,
        /// The connector, with the verifier the mode asks for.
        connector: MakeRustlsConnect,
    },
}

/// What the certificate check requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Encryption only (libpq's prefer/require).
    None,
    /// Chain to a trusted CA, any host name.
    Ca,
    /// Chain to a trusted CA and the host name.
    Full,
}

/// The TLS setting for a libpq `sslmode` (None: `prefer`). Errors say what to fix.
pub fn setting(ssl_mode: Option<&str>) -> Result<TlsSetting, String> {
    let (mode, check) = match ssl_mode.unwrap_or("prefer") {
        "disable" => return Ok(TlsSetting::Off),
        "allow" | "prefer" => (SslMode::Prefer, Check::None),
        "require" => (
            SslMode::Require,
            if root_cert_source().is_some() {
                Check::Ca
            } else {
                Check::None
            },
        ),
        "verify-ca" => (SslMode::Require, Check::Ca),
        "verify-full" => (SslMode::Require, Check::Full),
        other => {
            return Err(format!(
                "sslMode {other:?} is not a libpq sslmode: use disable, prefer, require, verify-ca or verify-full"
            ))
        }
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        Check::None => Arc::new(EncryptOnly(provider)),
        Check::Ca | Check::Full => {
            let roots = trusted_roots(ssl_mode.unwrap_or("prefer"))?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("TLS setup failed: {e}"))?;
            Arc::new(ChainCheck {
                inner: webpki,
                check_name: check == Check::Full,
            })
        }
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(TlsSetting::On {
        mode,
        connector: MakeRustlsConnect::new(config),
    })
}

/// Where trusted CAs come from, libpq's way: `PGSSLROOTCERT`, else `~/.postgresql/root.crt`.
enum RootSource {
    System,
    File(PathBuf),
}

fn root_cert_source() -> Option<RootSource> {
    match std::env::var_os("PGSSLROOTCERT") {
        Some(v) if v == "system" => Some(RootSource::System),
        Some(v) if !v.is_empty() => Some(RootSource::File(PathBuf::from(v))),
        _ => {
            let home = std::env::var_os("HOME")?;
            let p = PathBuf::from(home).join(".postgresql/root.crt");
            p.is_file().then_some(RootSource::File(p))
        }
    }
}

fn trusted_roots(mode: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    match root_cert_source() {
        None => {
            return Err(format!(
                "sslMode {mode} needs the CA that signed the server's certificate: set PGSSLROOTCERT to its PEM file (or to \"system\"), or put it in ~/.postgresql/root.crt"
            ))
        }
        Some(RootSource::System) => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
        }
        Some(RootSource::File(path)) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    format!(
                        "cannot read the root certificate {}: {e}; point PGSSLROOTCERT at a PEM file",
                        path.display()
                    )
                })?;
            for c in certs {
                roots.add(c).map_err(|e| {
                    format!("bad root certificate in {}: {e}", path.display())
                })?;
            }
        }
    }
    if roots.is_empty() {
        return Err(format!(
            "sslMode {mode}: no trusted root certificate found: set PGSSLROOTCERT to the CA's PEM file"
        ));
    }
    Ok(roots)
}

/// Encryption without a certificate check (libpq's `prefer` and `require`): the handshake
/// signatures are still verified, so the session is bound to the presented key.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The WebPKI chain check; `verify-ca` accepts a certificate issued for another name.
#[derive(Debug)]
struct ChainCheck {
    inner: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for ChainCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_to_libpq_behaviour() {
        assert!(matches!(setting(Some("disable")), Ok(TlsSetting::Off)));
        assert!(matches!(
            setting(None),
            Ok(TlsSetting::On {
                mode: SslMode::Prefer,
                ..
            })
        ));
        assert!(matches!(
            setting(Some("allow")),
            Ok(TlsSetting::On {
                mode: SslMode::Prefer,
                ..
            })
        ));
        let err = setting(Some("sometimes")).err().unwrap_or_default();
        assert!(err.contains("not a libpq sslmode"), "{err}");
    }
}
