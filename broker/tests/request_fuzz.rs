//! Mutation fuzzing of request decoding, in process: the 118 real client request frames of
//! `tests/fuzz/client-requests.jsonl` (captured from librdkafka and kafka-python), mutated the ways that
//! reach deep into the decoders (bit flips, extreme counts and lengths, varints, insertions, deletions,
//! truncation, splices, other versions of the same API), each decoded as the broker decodes it: header,
//! then the body of every API the broker serves, under the decode guard. A panic fails the test; an abort
//! (what an unguarded element count did) kills it. Resident memory must stay bounded.
//!
//! `FUZZ_ITERATIONS` (default 60 000) sets the number of mutated frames; `FUZZ_SEED` the generator's seed.
//! The longer runs recorded in ROBUSTNESS.md use the same test with more iterations, and the cargo-fuzz
//! target in `broker/fuzz/` (libFuzzer's own mutations over the same seeds).

use broker::handlers;
use bytes::Bytes;

#[global_allocator]
static ALLOCATOR: net::GuardedAllocator = net::GuardedAllocator::new();

/// A small, fast, deterministic generator (xorshift64*): the same seed gives the same frames.
struct Generator(u64);

impl Generator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            0
        } else {
            (self.next() % bound as u64) as usize
        }
    }
}

fn seed_frames() -> Vec<Vec<u8>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fuzz/client-requests.jsonl"
    );
    let text = std::fs::read_to_string(path).expect("seed corpus");
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("seed line is JSON");
            let hex = value["hex"].as_str().expect("hex field");
            (0..hex.len())
                .step_by(2)
                .map(|index| u8::from_str_radix(&hex[index..index + 2], 16).expect("hex"))
                .collect()
        })
        .collect()
}

/// Values that break length and count handling when written over a field.
const EXTREME_I32: [i32; 8] = [
    0x7fff_ffff,
    -1,
    -2,
    i32::MIN,
    0x0100_0000,
    0xffff,
    1 << 20,
    0,
];
/// Unsigned varints (compact counts and lengths) at and past their limits.
const EXTREME_VARINTS: [&[u8]; 5] = [
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0xff, 0xff, 0xff, 0xff, 0x7f],
    &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
    &[0xff, 0xff, 0xff, 0x07],
    &[0x00],
];

fn mutate(generator: &mut Generator, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut frame = seeds[generator.below(seeds.len())].clone();
    let rounds = 1 + generator.below(4);
    for _ in 0..rounds {
        let length = frame.len().max(1);
        let at = generator.below(length);
        match generator.below(10) {
            0 => {
                if !frame.is_empty() {
                    frame[at] ^= 1 << generator.below(8);
                }
            }
            1 => {
                if !frame.is_empty() {
                    frame[at] = generator.next() as u8;
                }
            }
            2 => {
                let value = EXTREME_I32[generator.below(EXTREME_I32.len())].to_be_bytes();
                for (offset, byte) in value.iter().enumerate() {
                    if let Some(slot) = frame.get_mut(at + offset) {
                        *slot = *byte;
                    }
                }
            }
            3 => {
                let value = EXTREME_VARINTS[generator.below(EXTREME_VARINTS.len())];
                let end = (at + value.len()).min(frame.len());
                frame.splice(at.min(frame.len())..end, value.iter().copied());
            }
            4 => {
                let count = 1 + generator.below(16);
                let bytes: Vec<u8> = (0..count).map(|_| generator.next() as u8).collect();
                let at = at.min(frame.len());
                frame.splice(at..at, bytes);
            }
            5 => {
                let end = (at + 1 + generator.below(16)).min(frame.len());
                if at < end {
                    frame.drain(at..end);
                }
            }
            6 => frame.truncate(at),
            7 => {
                // Another version of the same API: the bytes of one version read as another.
                if frame.len() >= 4 {
                    let version = generator.below(18) as i16;
                    frame[2..4].copy_from_slice(&version.to_be_bytes());
                }
            }
            8 => {
                // Splice the tail of another seed.
                let other = &seeds[generator.below(seeds.len())];
                let from = generator.below(other.len().max(1));
                frame.truncate(at);
                frame.extend_from_slice(&other[from.min(other.len())..]);
            }
            _ => {
                let end = (at + 1 + generator.below(8)).min(frame.len());
                let copy: Vec<u8> = frame[at.min(end)..end].to_vec();
                frame.splice(at.min(end)..at.min(end), copy);
            }
        }
    }
    frame
}

/// Decodes `frame` as the broker does before dispatching it. Errors are expected; panics are not.
fn decode_like_the_broker(frame: Vec<u8>) -> bool {
    let Ok(header) = net::decode_header(Bytes::from(frame)) else {
        return false;
    };
    let Some(entry) = handlers::entry(header.api_key) else {
        return false;
    };
    if header.api_version < entry.min_version || header.api_version > entry.max_version {
        return false;
    }
    (entry.check_decode)(&header).is_ok()
}

fn resident_high_water_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

#[test]
fn every_seed_the_broker_serves_decodes() {
    let mut served = 0;
    for (index, frame) in seed_frames().into_iter().enumerate() {
        let header = net::decode_header(Bytes::from(frame.clone())).expect("seed header");
        let entry = handlers::entry(header.api_key).expect("a served API");
        // kafka-python asks for ApiVersions v4, newer than served: it gets the v0 answer instead.
        if header.api_version > entry.max_version {
            continue;
        }
        served += 1;
        assert!(decode_like_the_broker(frame), "seed {index} must decode");
    }
    assert!(served >= 100, "{served} seeds served");
}

#[test]
fn every_four_byte_window_set_to_an_absurd_count_is_refused_or_decoded() {
    // The deterministic regression for the abort: in every seed, every position overwritten with
    // 0x7fffffff (an i32 array count) and with a maximal unsigned varint (a compact count).
    let seeds = seed_frames();
    let mut frames = 0;
    for seed in &seeds {
        for at in 8..seed.len() {
            let mut frame = seed.clone();
            for (offset, byte) in 0x7fff_ffffi32.to_be_bytes().iter().enumerate() {
                if let Some(slot) = frame.get_mut(at + offset) {
                    *slot = *byte;
                }
            }
            decode_like_the_broker(frame);
            let mut frame = seed.clone();
            let end = (at + 5).min(frame.len());
            frame.splice(at..end, EXTREME_VARINTS[0].iter().copied());
            decode_like_the_broker(frame);
            frames += 2;
        }
    }
    assert!(frames > 10_000, "{frames} frames");
    assert!(
        resident_high_water_kib() < 1024 * 1024,
        "resident memory peaked at {} KiB",
        resident_high_water_kib()
    );
}

#[test]
fn mutated_client_frames_never_panic_or_abort() {
    let iterations: usize = std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(60_000);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(0x5eed_f00d);
    let seeds = seed_frames();
    let mut generator = Generator(seed.max(1));
    let mut decoded = 0usize;
    for _ in 0..iterations {
        if decode_like_the_broker(mutate(&mut generator, &seeds)) {
            decoded += 1;
        }
    }
    let peak = resident_high_water_kib();
    println!("{iterations} mutated frames, {decoded} decoded, peak RSS {peak} KiB");
    // Some mutations must still be valid requests (the fuzzer reaches past the header) …
    assert!(decoded > 0);
    // … and no decode may take memory in proportion to a count it read.
    assert!(peak < 1024 * 1024, "resident memory peaked at {peak} KiB");
}
