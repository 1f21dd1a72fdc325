//! The Kafka listener: every shard binds the same address with SO_REUSEPORT and the kernel spreads
//! incoming connections over the shards.
//!
//! SO_REUSEPORT would also let a second process (same user) join the group and take a share of the
//! clients, so the process first checks with [`ensure_address_free`] that nobody listens there yet.

use std::net::SocketAddr;

pub type TcpStream = glommio::net::TcpStream;

/// Fails with `AddrInUse` if a socket already listens on `address` (or on the same port of the wildcard
/// address, or of every address when `address` is the wildcard). Call it before this process's shards
/// bind: SO_REUSEPORT would otherwise let them join another process's listeners. It reads the kernel's
/// socket tables (`/proc/net/tcp`, `/proc/net/tcp6`) instead of test-binding, because a test bind without
/// SO_REUSEPORT also collides with the connections of an earlier run still in TIME_WAIT. Two processes
/// that both pass this check before either binds can still share the port; that race is only as wide as
/// the gap between this call and the shards' binds. Port 0 (any free port) is not checked.
pub fn ensure_address_free(address: SocketAddr) -> std::io::Result<()> {
    if address.port() == 0 {
        return Ok(());
    }
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(text) => text,
            // No IPv6 in this kernel, or no /proc: nothing to check there.
            Err(_) => continue,
        };
        let found = listeners(&text).find(|listener| conflicts(*listener, address));
        if let Some(listener) = found {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "Address already in use: a socket of another process listens on {listener}"
                ),
            ));
        }
    }
    Ok(())
}

/// TCP state LISTEN in `/proc/net/tcp*`.
const TCP_LISTEN: &str = "0A";

/// The listening addresses of a `/proc/net/tcp` or `/proc/net/tcp6` table. Each line after the header
/// is `sl local_address rem_address st ...`, the local address as `<address hex>:<port hex>`, where the
/// address is the raw network-order bytes printed as native-endian 32-bit words. Lines that do not parse
/// are skipped.
fn listeners(table: &str) -> impl Iterator<Item = SocketAddr> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1)?;
        let state = fields.nth(1)?;
        if state != TCP_LISTEN {
            return None;
        }
        let (address, port) = local.split_once(':')?;
        let port = u16::from_str_radix(port, 16).ok()?;
        let mut bytes = Vec::with_capacity(16);
        for word in 0..address.len() / 8 {
            let value = u32::from_str_radix(address.get(word * 8..word * 8 + 8)?, 16).ok()?;
            bytes.extend_from_slice(&value.to_ne_bytes());
        }
        let ip = match bytes.len() {
            4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
            16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
            _ => return None,
        };
        Some(SocketAddr::new(ip, port))
    })
}

/// Would `ours` share connections with the listener `theirs`? Same port and the same address, or either
/// one the wildcard (an IPv6 wildcard listener may take IPv4 connections too).
fn conflicts(theirs: SocketAddr, ours: SocketAddr) -> bool {
    let canonical = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    };
    theirs.port() == ours.port()
        && (theirs.ip().is_unspecified()
            || ours.ip().is_unspecified()
            || canonical(theirs.ip()) == canonical(ours.ip()))
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

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 00000000:2384 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0100007F:1F91 0100007F:D431 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0
";

    #[test]
    fn listening_sockets_are_found_and_others_ignored() {
        if cfg!(target_endian = "big") {
            return;
        }
        let found: Vec<SocketAddr> = listeners(TABLE).collect();
        assert_eq!(
            found,
            vec![
                "127.0.0.1:8080".parse().unwrap(),
                "0.0.0.0:9092".parse().unwrap()
            ]
        );
        // TIME_WAIT (06) on 8081 does not count.
        assert!(!found.iter().any(|address| address.port() == 8081));
    }

    #[test]
    fn conflicts_need_the_same_port_and_overlapping_addresses() {
        let at = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert!(conflicts(at("127.0.0.1:9092"), at("127.0.0.1:9092")));
        assert!(conflicts(at("0.0.0.0:9092"), at("127.0.0.1:9092")));
        assert!(conflicts(at("127.0.0.1:9092"), at("0.0.0.0:9092")));
        assert!(conflicts(at("[::]:9092"), at("127.0.0.1:9092")));
        assert!(conflicts(
            at("[::ffff:127.0.0.1]:9092"),
            at("127.0.0.1:9092")
        ));
        assert!(!conflicts(at("127.0.0.1:9093"), at("127.0.0.1:9092")));
        assert!(!conflicts(at("127.0.0.2:9092"), at("127.0.0.1:9092")));
    }

    #[test]
    fn a_listening_socket_is_detected() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let error = ensure_address_free(address).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
        drop(listener);
        ensure_address_free(address).unwrap();
    }
}
