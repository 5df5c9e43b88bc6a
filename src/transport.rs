//! `Transport`: a connection's socket, plain TCP or TCP under TLS.
//!
//! Writer cores write pre-encoded frames straight to the socket, many per call, so TLS
//! is not a stream wrapper here but rustls's sans-IO `ServerConnection`: plaintext goes
//! into rustls (bounded by its buffer limit, 64 KiB by default), ciphertext comes out to
//! the socket with non-blocking writes. Reads run the other way. The handshake itself is
//! done by tokio-rustls before HTTP; the upgrade hands the session over with
//! `TlsStream::into_inner`.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConnection};

/// Why the TLS settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate chain file could not be read or holds no certificate.
    #[error("cannot read certificates from {path}: {reason}")]
    Certs {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The private key file could not be read or holds no key.
    #[error("cannot read private key from {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// rustls rejected the certificate and key.
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A rustls server configuration from PEM files (HTTP/1.1 over ALPN).
pub fn server_config(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| TlsError::Certs {
            path: cert_path.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Certs {
            path: cert_path.display().to_string(),
            reason: "no certificate in file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::Key {
        path: key_path.display().to_string(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The socket of one connection.
#[derive(Debug)]
pub enum Transport {
    /// Plain TCP.
    Plain(TcpStream),
    /// TCP carrying a TLS session (boxed: the session is large).
    Tls(TcpStream, Box<RefCell<ServerConnection>>),
}

/// `std::io` view of a non-blocking tokio socket, for rustls's `read_tls`/`write_tls`.
struct Sync<'a>(&'a TcpStream);

impl Read for Sync<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Sync<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(t) | Transport::Tls(t, _) => t,
        }
    }

    /// Writes what the socket takes without waiting; `WouldBlock` when it takes
    /// nothing. Under TLS, accepted bytes may wait in rustls (bounded) until the socket
    /// drains: [`Transport::flush`] sends them.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(t) => t.try_write(buf),
            Transport::Tls(t, tls) => {
                let mut tls = tls.borrow_mut();
                write_out(t, &mut tls)?;
                let n = tls.writer().write(buf)?;
                match write_out(t, &mut tls) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if n == 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            }
        }
    }

    /// Sends bytes buffered below us (TLS records); `WouldBlock` if some remain.
    pub fn flush(&self) -> io::Result<()> {
        match self {
            Transport::Plain(_) => Ok(()),
            Transport::Tls(t, tls) => write_out(t, &mut tls.borrow_mut()),
        }
    }

    /// Reads decrypted (or plain) bytes without waiting: `WouldBlock` when there are
    /// none yet, `Ok(0)` at the end of the stream (TCP FIN, or TLS close_notify).
    /// Under TLS, plaintext rustls already decrypted comes first, so a caller that
    /// stopped before `WouldBlock` must call this again before waiting for readiness.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(t) => t.try_read(buf),
            Transport::Tls(t, tls) => {
                let mut tls = tls.borrow_mut();
                loop {
                    match tls.reader().read(buf) {
                        Ok(n) => return Ok(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                    match tls.read_tls(&mut Sync(t)) {
                        Ok(0) => return Ok(0),
                        Ok(_) => {
                            tls.process_new_packets()
                                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                            // Alerts or key updates to answer; what does not fit now
                            // goes with the next write.
                            let _ = write_out(t, &mut tls);
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// Starts a clean close: TLS close_notify (best effort), then a TCP half-close.
    pub fn shutdown_write(&self) {
        if let Transport::Tls(t, tls) = self {
            let mut tls = tls.borrow_mut();
            tls.send_close_notify();
            let _ = write_out(t, &mut tls);
        }
        let _ = socket2::SockRef::from(self.tcp()).shutdown(std::net::Shutdown::Write);
    }
}

fn write_out(t: &TcpStream, tls: &mut ServerConnection) -> io::Result<()> {
    while tls.wants_write() {
        tls.write_tls(&mut Sync(t))?;
    }
    Ok(())
}
