//! libFuzzer target: one request frame (without its length prefix) decoded as the broker decodes it before
//! dispatch — the request header, then the body of the API it names when the broker serves that version,
//! under the decode guard (`net::decode_guard`). Seeds: the real client frames of
//! `tests/fuzz/client-requests.jsonl` (`python3 broker/fuzz/make_corpus.py` writes them as corpus files).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: net::GuardedAllocator = net::GuardedAllocator::new();

fuzz_target!(|data: &[u8]| {
    let Ok(header) = net::decode_header(Bytes::copy_from_slice(data)) else {
        return;
    };
    let Some(entry) = broker::handlers::entry(header.api_key) else {
        return;
    };
    if header.api_version < entry.min_version || header.api_version > entry.max_version {
        return;
    }
    let _ = (entry.check_decode)(&header);
});
