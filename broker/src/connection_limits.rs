//! Broker-wide connection limits: Kafka's `max.connections` and `max.connections.per.ip`.
//!
//! Every shard accepts on its own listener; the counts are shared (an atomic total and a locked map per
//! address, touched only on accept and close, never on the data path). A connection over a limit is
//! closed right after accept, as Kafka does for `max.connections.per.ip` (Kafka blocks its acceptor for
//! `max.connections`; closing is equivalent for descriptors and the client retries with backoff).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionRefusal {
    #[error("the broker has {max} connections open (max.connections)")]
    TooManyConnections { max: usize },
    #[error("{address} has {max} connections open (max.connections.per.ip)")]
    TooManyFromAddress { address: IpAddr, max: usize },
}

pub struct ConnectionRegistry {
    max_connections: usize,
    max_per_address: usize,
    open: AtomicUsize,
    /// Connections closed since start (the memory trimmer looks at it).
    closed: AtomicU64,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; dropping it gives its place back.
pub struct ConnectionPermit {
    registry: Arc<ConnectionRegistry>,
    address: Option<IpAddr>,
}

static GLOBAL: OnceLock<Arc<ConnectionRegistry>> = OnceLock::new();

impl ConnectionRegistry {
    pub fn new(max_connections: usize, max_per_address: usize) -> Arc<ConnectionRegistry> {
        Arc::new(ConnectionRegistry {
            max_connections,
            max_per_address,
            open: AtomicUsize::new(0),
            closed: AtomicU64::new(0),
            per_address: Mutex::new(HashMap::new()),
        })
    }

    /// The process's registry (every shard passes the same limits; the first one creates it).
    pub fn global(max_connections: usize, max_per_address: usize) -> Arc<ConnectionRegistry> {
        GLOBAL
            .get_or_init(|| ConnectionRegistry::new(max_connections, max_per_address))
            .clone()
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn closed_connections(&self) -> u64 {
        self.closed.load(Ordering::Relaxed)
    }

    pub fn admit(
        self: &Arc<Self>,
        address: Option<IpAddr>,
    ) -> Result<ConnectionPermit, ConnectionRefusal> {
        let admitted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max_connections).then_some(open + 1)
            });
        if admitted.is_err() {
            return Err(ConnectionRefusal::TooManyConnections {
                max: self.max_connections,
            });
        }
        if let Some(address) = address {
            let mut per_address = self.lock_addresses();
            let count = per_address.entry(address).or_insert(0);
            if *count >= self.max_per_address {
                drop(per_address);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(ConnectionRefusal::TooManyFromAddress {
                    address,
                    max: self.max_per_address,
                });
            }
            *count += 1;
        }
        Ok(ConnectionPermit {
            registry: self.clone(),
            address,
        })
    }

    fn lock_addresses(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_address
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        if let Some(address) = self.address {
            let mut per_address = self.registry.lock_addresses();
            if let Some(count) = per_address.get_mut(&address) {
                *count -= 1;
                if *count == 0 {
                    per_address.remove(&address);
                }
            }
        }
        self.registry.open.fetch_sub(1, Ordering::AcqRel);
        self.registry.closed.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_apply_and_closing_gives_places_back() {
        let registry = ConnectionRegistry::new(3, 2);
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let two: IpAddr = "10.0.0.2".parse().unwrap();
        let first = registry.admit(Some(one)).unwrap();
        let _second = registry.admit(Some(one)).unwrap();
        assert_eq!(
            registry.admit(Some(one)).err(),
            Some(ConnectionRefusal::TooManyFromAddress {
                address: one,
                max: 2
            })
        );
        let _third = registry.admit(Some(two)).unwrap();
        assert_eq!(
            registry.admit(Some(two)).err(),
            Some(ConnectionRefusal::TooManyConnections { max: 3 })
        );
        assert_eq!(registry.open_connections(), 3);
        drop(first);
        assert_eq!(registry.open_connections(), 2);
        assert_eq!(registry.closed_connections(), 1);
        let _again = registry.admit(Some(one)).unwrap();
        assert_eq!(registry.lock_addresses().get(&one), Some(&2));
    }
}
