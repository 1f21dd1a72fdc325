//! Decoding request bodies from hostile bytes without letting an element count reserve memory.
//!
//! # The problem
//! `kafka-protocol` 0.18 (the newest release) decodes every array as
//! `let mut result = Vec::with_capacity(count); for _ in 0..count { result.push(decode(buf)?) }`, with `count`
//! read straight off the wire (`Array` and `CompactArray` in its `protocol/types.rs`). An 18-byte Metadata v0
//! request declaring 0x7fffffff topics asks the allocator for ~154 GB before a single element is read; the
//! allocation fails and Rust aborts the whole process (`handle_alloc_error` aborts: it is not a panic that
//! could be caught). Every API with an array has the same hole. Reported upstream as
//! kafka-protocol-rs/kafka-protocol-rs pull requests #152, #161 and #200 ("bound Array / CompactArray decoder
//! capacity by remaining buffer"), open and unreleased as of 2026-11; when a release bounds the capacity this
//! guard becomes a second line of defence and can go.
//!
//! # The guard
//! An array can never hold more elements than there are bytes left in the frame: every element takes at
//! least one byte on the wire. So while a request body is being decoded ([`decode_request`]), no single
//! allocation can legitimately exceed `frame bytes × MAX_DECODED_ELEMENT_BYTES` (no decoded element type is
//! that large). [`GuardedAllocator`], the process's global allocator, watches for exactly that: inside a
//! decode, an allocation above the bound is an impossible count. It cannot be refused (a null return aborts),
//! so it is served from an *address-space reservation* (`mmap` with `MAP_NORESERVE`: no memory is committed
//! until a page is touched) and the decode is marked as violated. The decoder then touches at most
//! `frame bytes` elements of it before it runs out of input and fails, the reservation is unmapped when the
//! vector is dropped, and [`decode_request`] reports [`DecodeError::ImpossibleCount`] (even if the decoder
//! had somehow succeeded). Outside a decode, and for allocations below [`MIN_GUARDED_BYTES`], the allocator is
//! the system allocator with one thread-local read added to large allocations.
//!
//! Limits of the guard: it needs the kernel to grant a large `MAP_NORESERVE` mapping, which the default
//! overcommit mode (0) and mode 1 do; under `vm.overcommit_memory=2` the reservation fails and the process
//! still aborts on such a frame. Reservations are recorded in a fixed table of [`RESERVATION_SLOTS`]; decodes
//! are synchronous, so at most one is live per thread at any moment.

use bytes::Bytes;
use kafka_protocol::protocol::Decodable;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Largest in-memory size of one decoded element, per wire byte it must at least take. The request structs
/// of `kafka-protocol` are a few hundred bytes at most (strings and byte fields are `Bytes` views of the
/// frame, 32 bytes each); 1 KiB leaves room.
pub const MAX_DECODED_ELEMENT_BYTES: usize = 1024;

/// Allocations below this size are never checked (the common path stays the system allocator's).
pub const MIN_GUARDED_BYTES: usize = 64 * 1024;

/// How many reservations may be live at once (one per thread decoding at that moment).
pub const RESERVATION_SLOTS: usize = 64;

thread_local! {
    /// The largest allocation a decode in progress on this thread may make; 0 when no decode is running.
    static DECODE_ALLOCATION_BOUND: Cell<usize> = const { Cell::new(0) };
    /// Set when the decode in progress made an allocation above its bound.
    static DECODE_VIOLATED: Cell<bool> = const { Cell::new(false) };
}

/// Addresses of live reservations (0: free slot), so `dealloc` can unmap them.
static RESERVATIONS: [AtomicUsize; RESERVATION_SLOTS] =
    [const { AtomicUsize::new(0) }; RESERVATION_SLOTS];
static LIVE_RESERVATIONS: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Why a request body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("an element count larger than the {frame_bytes} bytes left in the frame")]
    ImpossibleCount { frame_bytes: usize },
    #[error("{0}")]
    Malformed(String),
}

/// The global allocator of every binary that decodes requests from the network (see the module doc).
/// Install it with `#[global_allocator] static ALLOCATOR: net::decode_guard::GuardedAllocator = ...;`.
pub struct GuardedAllocator;

impl GuardedAllocator {
    pub const fn new() -> Self {
        GuardedAllocator
    }
}

impl Default for GuardedAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether this process runs on [`GuardedAllocator`] (the broker checks at start-up).
pub fn installed() -> bool {
    // Any allocation through the guard sets the flag; make sure one has happened.
    drop(std::hint::black_box(Box::new(0u64)));
    INSTALLED.load(Ordering::Relaxed)
}

/// The bound a decode in progress on this thread imposes on one allocation, if it exceeds it.
fn over_decode_bound(size: usize) -> bool {
    if size < MIN_GUARDED_BYTES {
        return false;
    }
    let bound = DECODE_ALLOCATION_BOUND.with(Cell::get);
    bound != 0 && size > bound
}

/// Maps `size` bytes of address space without committing memory; null if the kernel refuses.
unsafe fn reserve(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping; no file, no fixed address.
    let address = libc::mmap(
        std::ptr::null_mut(),
        size,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        -1,
        0,
    );
    if address == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    for slot in &RESERVATIONS {
        if slot
            .compare_exchange(0, address as usize, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            LIVE_RESERVATIONS.fetch_add(1, Ordering::AcqRel);
            DECODE_VIOLATED.with(|violated| violated.set(true));
            return address as *mut u8;
        }
    }
    // No slot to remember it by: give the mapping back and let the caller fail.
    libc::munmap(address, size);
    std::ptr::null_mut()
}

/// Unmaps `pointer` if it is a live reservation; false if it is not one.
unsafe fn release(pointer: *mut u8, size: usize) -> bool {
    if size < MIN_GUARDED_BYTES || LIVE_RESERVATIONS.load(Ordering::Acquire) == 0 {
        return false;
    }
    for slot in &RESERVATIONS {
        if slot
            .compare_exchange(pointer as usize, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            LIVE_RESERVATIONS.fetch_sub(1, Ordering::AcqRel);
            // SAFETY: the mapping was made by `reserve` with this size (the layout it was allocated with).
            libc::munmap(pointer as *mut libc::c_void, size);
            return true;
        }
    }
    false
}

// SAFETY: every pointer handed out is either the system allocator's or a fresh private mapping of at least
// the requested size (page-aligned, which satisfies any alignment up to the page size), and each is returned
// to where it came from.
unsafe impl GlobalAlloc for GuardedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !INSTALLED.load(Ordering::Relaxed) {
            INSTALLED.store(true, Ordering::Relaxed);
        }
        if over_decode_bound(layout.size()) && layout.align() <= 4096 {
            let reserved = reserve(layout.size());
            if !reserved.is_null() {
                return reserved;
            }
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if over_decode_bound(layout.size()) && layout.align() <= 4096 {
            // Fresh anonymous mappings read as zero.
            let reserved = reserve(layout.size());
            if !reserved.is_null() {
                return reserved;
            }
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if !release(pointer, layout.size()) {
            System.dealloc(pointer, layout)
        }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let is_reservation = layout.size() >= MIN_GUARDED_BYTES
            && LIVE_RESERVATIONS.load(Ordering::Acquire) != 0
            && RESERVATIONS
                .iter()
                .any(|slot| slot.load(Ordering::Acquire) == pointer as usize);
        if !is_reservation && !over_decode_bound(new_size) {
            return System.realloc(pointer, layout, new_size);
        }
        // Move by hand: into a reservation, out of one, or both.
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let moved = self.alloc(new_layout);
        if !moved.is_null() {
            std::ptr::copy_nonoverlapping(pointer, moved, layout.size().min(new_size));
            self.dealloc(pointer, layout);
        }
        moved
    }
}

/// Runs `decode` with the allocation bound of a `frame_bytes`-byte frame in force on this thread.
/// Returns what it returned and whether it made an impossible allocation.
fn with_decode_bound<T>(frame_bytes: usize, decode: impl FnOnce() -> T) -> (T, bool) {
    let bound = frame_bytes
        .saturating_mul(MAX_DECODED_ELEMENT_BYTES)
        .max(MIN_GUARDED_BYTES);
    let previous = DECODE_ALLOCATION_BOUND.with(|cell| cell.replace(bound));
    DECODE_VIOLATED.with(|violated| violated.set(false));
    let output = decode();
    let violated = DECODE_VIOLATED.with(|violated| violated.replace(false));
    DECODE_ALLOCATION_BOUND.with(|cell| cell.set(previous));
    (output, violated)
}

/// Decodes a request body (or any message) of `version` from `body` under the guard.
pub fn decode_request<R: Decodable>(body: &Bytes, version: i16) -> Result<R, DecodeError> {
    let mut buffer = body.clone();
    guarded(body.len(), || {
        R::decode(&mut buffer, version).map_err(|error| DecodeError::Malformed(error.to_string()))
    })
}

/// Runs `decode` under the bound of a `frame_bytes`-byte frame. A decode that made an impossible allocation
/// is refused even if it finished: what it built is dropped while the bound is still in force (the
/// reservation is released here, on this thread). Also for decoders that are not a `Decodable` (a request
/// header, a record batch).
pub fn guarded<T>(
    frame_bytes: usize,
    decode: impl FnOnce() -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let (result, violated) = with_decode_bound(frame_bytes, || {
        let result = decode();
        if DECODE_VIOLATED.with(Cell::get) {
            drop(result);
            return None;
        }
        Some(result)
    });
    match result {
        Some(result) if !violated => result,
        _ => Err(DecodeError::ImpossibleCount { frame_bytes }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::{MetadataRequest, ProduceRequest};

    #[global_allocator]
    static ALLOCATOR: GuardedAllocator = GuardedAllocator::new();

    #[test]
    fn metadata_v0_with_an_absurd_topic_count_is_refused_not_aborted() {
        let mut body = BytesMut::new();
        body.put_i32(0x7fff_ffff);
        body.put_i16(1);
        body.put_u8(b'a');
        let result = decode_request::<MetadataRequest>(&body.freeze(), 0);
        assert!(
            matches!(result, Err(DecodeError::ImpossibleCount { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn compact_varint_counts_are_guarded_too() {
        // Metadata v12: topics as a compact array, count + 1 as an unsigned varint (here 2^32 - 1).
        let body = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
        let result = decode_request::<MetadataRequest>(&body, 12);
        assert!(
            matches!(result, Err(DecodeError::ImpossibleCount { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn nested_counts_are_guarded() {
        // Produce v3: transactional id null, acks, timeout, 1 topic named "t" with 0x7fffffff partitions.
        let mut body = BytesMut::new();
        body.put_i16(-1);
        body.put_i16(1);
        body.put_i32(1000);
        body.put_i32(1);
        body.put_i16(1);
        body.put_u8(b't');
        body.put_i32(0x7fff_ffff);
        let result = decode_request::<ProduceRequest>(&body.freeze(), 3);
        assert!(result.is_err(), "{result:?}");
    }

    #[test]
    fn ordinary_requests_decode_and_allocations_outside_a_decode_are_unbounded() {
        use kafka_protocol::protocol::Encodable;
        let mut request = MetadataRequest::default();
        request.topics = Some(
            (0..5000)
                .map(|index| {
                    let mut topic =
                        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default();
                    topic.name = Some(kafka_protocol::messages::TopicName(
                        kafka_protocol::protocol::StrBytes::from_string(format!("topic-{index}")),
                    ));
                    topic
                })
                .collect(),
        );
        let mut encoded = BytesMut::new();
        request.encode(&mut encoded, 4).unwrap();
        let decoded = decode_request::<MetadataRequest>(&encoded.freeze(), 4).unwrap();
        assert_eq!(decoded.topics.unwrap().len(), 5000);
        // Outside a decode a large allocation is an ordinary one.
        let large = vec![7u8; 64 << 20];
        assert_eq!(large[(64 << 20) - 1], 7);
        assert!(installed());
    }
}
