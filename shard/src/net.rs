//! The Kafka listener: every shard binds the same address with SO_REUSEPORT and the kernel spreads
//! incoming connections over the shards.
//!
//! SO_REUSEPORT would also let a second process (same user) join the group and take a share of the
//! clients, so the process first checks with [`ensure_address_free`] that nobody listens there yet.

use std::net::SocketAddr;

pub type TcpStream = glommio::net::TcpStream;

/// Fails with `AddrInUse` if any socket already listens on `address`: binds and listens once *without*
/// SO_REUSEPORT (which no existing listener can share), then closes that socket again. Call it before
/// this process's shards bind. Two processes that both pass this check before either binds can still
/// share the port; that race is only as wide as the gap between this call and the shards' binds.
/// Port 0 (any free port) is not checked.
pub fn ensure_address_free(address: SocketAddr) -> std::io::Result<()> {
    if address.port() == 0 {
        return Ok(());
    }
    // std sets SO_REUSEADDR (so sockets of an earlier run in TIME_WAIT do not count) but never
    // SO_REUSEPORT.
    let probe = std::net::TcpListener::bind(address)?;
    drop(probe);
    Ok(())
}

pub struct Listener {
    inner: glommio::net::TcpListener,
}

impl Listener {
    /// Binds `address` with SO_REUSEPORT (glommio always sets it).
    pub fn bind(address: SocketAddr) -> std::io::Result<Listener> {
        glommio::net::TcpListener::bind(address)
            .map(|inner| Listener { inner })
            .map_err(std::io::Error::from)
    }

    pub async fn accept(&self) -> std::io::Result<TcpStream> {
        let stream = self.inner.accept().await.map_err(std::io::Error::from)?;
        stream.set_nodelay(true).map_err(std::io::Error::from)?;
        Ok(stream)
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr().map_err(std::io::Error::from)
    }
}
