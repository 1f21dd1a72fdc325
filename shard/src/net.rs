//! The Kafka listener: every shard binds the same address with SO_REUSEPORT and the kernel spreads
//! incoming connections over the shards.
//!
//! SO_REUSEPORT would also let a second process (same user) join the group and take a share of the
//! clients, so the process first checks with [`ensure_address_free`] that nobody listens there yet.
//!
//! Accepted connections are [`TcpStream`]s: glommio's stream, whose vectored writes go out as one
//! `sendmsg`.

use futures_lite::{AsyncRead, AsyncWrite};
use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};

/// An accepted Kafka connection: glommio's stream, plus vectored writes.
///
/// glommio writes one buffer per `send` (its `poll_write_vectored` is the default, which writes only
/// the first buffer). Responses that complete together — pipelined produce acks, a fetch response in
/// several parts — would cost one system call each; [`AsyncWrite::poll_write_vectored`] here sends
/// them with one non-blocking `sendmsg`. When the socket is full (`EAGAIN`) it falls back to glommio's
/// `poll_write`, which registers for writability and wakes the task when there is room.
pub struct TcpStream {
    inner: glommio::net::TcpStream,
}

/// Most buffers one `sendmsg` takes (Linux's `UIO_MAXIOV` is 1024).
const MAX_IOVECS: usize = 1024;

impl TcpStream {
    /// Connects to `address` (Nagle off), failing after `timeout`.
    pub async fn connect(
        address: SocketAddr,
        timeout: std::time::Duration,
    ) -> std::io::Result<TcpStream> {
        let inner = glommio::net::TcpStream::connect_timeout(address, timeout)
            .await
            .map_err(std::io::Error::from)?;
        inner.set_nodelay(true).map_err(std::io::Error::from)?;
        Ok(TcpStream { inner })
    }

    pub fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.peer_addr().map_err(std::io::Error::from)
    }

    /// One non-blocking `sendmsg` of `buffers`: `None` when the socket has no room (EAGAIN).
    fn try_send_vectored(&self, buffers: &[IoSlice<'_>]) -> Option<std::io::Result<usize>> {
        let count = buffers.len().min(MAX_IOVECS);
        // SAFETY: a zeroed msghdr is valid (no name, no control data).
        let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
        // IoSlice is guaranteed ABI-compatible with `struct iovec`; sendmsg only reads the buffers.
        message.msg_iov = buffers.as_ptr() as *mut libc::iovec;
        message.msg_iovlen = count as _;
        loop {
            // SAFETY: the descriptor is open for the life of `self`; `message` points at `count`
            // valid iovecs borrowed for this call.
            let sent = unsafe {
                libc::sendmsg(
                    self.inner.as_raw_fd(),
                    &message,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if sent >= 0 {
                return Some(Ok(sent as usize));
            }
            let error = std::io::Error::last_os_error();
            match error.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => return None,
                _ => return Some(Err(error)),
            }
        }
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffer: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buffer)
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buffer)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffers: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if buffers.len() > 1 {
            if let Some(result) = self.try_send_vectored(buffers) {
                return Poll::Ready(result);
            }
        }
        // One buffer, or no room now: glommio's own write, which waits for room when there is none.
        let first = buffers
            .iter()
            .find(|buffer| !buffer.is_empty())
            .map_or(&[][..], |buffer| &buffer[..]);
        Pin::new(&mut self.inner).poll_write(cx, first)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

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
        Ok(TcpStream { inner: stream })
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

    /// A real loopback connection: many buffers in vectored writes, more than the socket takes at once
    /// (so some `sendmsg`s are short and some find no room and wait), arrive whole and in order.
    #[test]
    fn vectored_writes_arrive_whole_and_in_order() {
        use futures_lite::AsyncWriteExt;
        let parts: Vec<Vec<u8>> = (0..200u32)
            .map(|index| {
                let length = [1, 100, 4096, 300_000][index as usize % 4];
                (0..length)
                    .map(|byte| (byte as u32 ^ index) as u8)
                    .collect()
            })
            .collect();
        let expected: Vec<u8> = parts.concat();
        let (address_sender, address_receiver) = std::sync::mpsc::channel();
        let server = glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                address_sender.send(listener.local_addr().unwrap()).unwrap();
                let mut stream = listener.accept().await.unwrap();
                let mut offset = 0;
                let mut part = 0;
                let mut within = 0;
                while part < parts.len() {
                    let slices: Vec<IoSlice<'_>> = std::iter::once(&parts[part][within..])
                        .chain(parts[part + 1..].iter().take(7).map(|part| &part[..]))
                        .map(IoSlice::new)
                        .collect();
                    let mut written = futures_lite::future::poll_fn(|cx| {
                        Pin::new(&mut stream).poll_write_vectored(cx, &slices)
                    })
                    .await
                    .unwrap();
                    assert!(written > 0);
                    offset += written;
                    while written > 0 {
                        let left = parts[part].len() - within;
                        let taken = written.min(left);
                        written -= taken;
                        within += taken;
                        if within == parts[part].len() {
                            part += 1;
                            within = 0;
                        }
                    }
                }
                stream.close().await.unwrap();
                offset
            })
            .unwrap();
        let address = address_receiver.recv().unwrap();
        let mut client = std::net::TcpStream::connect(address).unwrap();
        // Read only after a while: 15 MB do not fit in the sockets' buffers, so the server meets a full
        // socket.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut received = Vec::new();
        std::io::Read::read_to_end(&mut client, &mut received).unwrap();
        assert_eq!(server.join().unwrap(), expected.len());
        assert!(received == expected, "bytes differ");
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
