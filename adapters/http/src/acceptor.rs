//! The TCP acceptor: poem's, with Nagle's algorithm turned off on every accepted connection.

use std::io;

use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use tokio::net::TcpStream;

/// Accepts like [`TcpAcceptor`], then sets `TCP_NODELAY`: a small frame written while an earlier
/// one is unacknowledged would otherwise wait for the peer's delayed ACK, up to 40 ms.
pub struct NoDelayAcceptor(TcpAcceptor);

impl NoDelayAcceptor {
    /// # Errors
    /// When the listener's address cannot be read.
    pub fn from_tokio(listener: tokio::net::TcpListener) -> io::Result<Self> {
        TcpAcceptor::from_tokio(listener).map(Self)
    }
}

impl Acceptor for NoDelayAcceptor {
    type Io = TcpStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.0.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(TcpStream, LocalAddr, RemoteAddr, Scheme)> {
        let (stream, local, remote, scheme) = self.0.accept().await?;
        // A connection that refuses the option still works, only with the delay.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        Ok((stream, local, remote, scheme))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_accepted_connection_has_nagles_algorithm_turned_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let mut acceptor = NoDelayAcceptor::from_tokio(listener).expect("acceptor");

        let (_client, accepted) = tokio::join!(TcpStream::connect(addr), acceptor.accept());

        let (stream, ..) = accepted.expect("accepted");
        assert!(stream.nodelay().expect("option readable"));
    }
}
