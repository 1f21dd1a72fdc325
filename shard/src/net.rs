//! The Kafka listener: every shard binds the same address with SO_REUSEPORT and the kernel spreads
//! incoming connections over the shards.

use std::net::SocketAddr;

pub type TcpStream = glommio::net::TcpStream;

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
