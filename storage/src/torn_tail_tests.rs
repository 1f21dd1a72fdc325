//! Crash and alignment tests of the log (a child of `tests`, whose helpers and O_DIRECT-like
//! `AlignedFs` it uses): torn and garbled tails recovered, zero padding after a crash, and the
//! appender's aligned gather writes.

use super::*;

/// Writes `n` batches, damages the active segment at `cut` (truncate or garble), reopens unclean.
fn torn<F: FileSystem>(fs: F, n: usize, cut_frac: f64, garble: bool, pad: usize) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 64,
        ..Default::default()
    };
    let log = open(fs.clone(), dir.path(), cfg.clone(), 0, false);
    let mut ends = vec![0u64];
    for i in 0..n {
        append(&log, simple_batch(1 + i % 4, 7 * (i % 5), i as i64), 0);
        ends.push(ends.last().unwrap() + simple_batch(1 + i % 4, 7 * (i % 5), 0).len() as u64);
    }
    drop(log);
    let p: PathBuf = dir.path().join(format!("{:020}.log", 0));
    let total = *ends.last().unwrap();
    let cut = ((total as f64) * cut_frac) as u64;
    let original = std::fs::read(&p).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    if garble {
        use std::os::unix::fs::FileExt;
        let at = cut.min(total - 1);
        let mut orig = [0u8];
        f.read_exact_at(&mut orig, at).unwrap();
        f.write_all_at(&[if orig[0] == 0xAB { 0xAC } else { 0xAB }], at)
            .unwrap();
    } else {
        f.set_len(cut).unwrap();
        if pad > 0 {
            f.set_len(cut + pad as u64).unwrap(); // zero padding after the tear
        }
    }
    drop(f);
    // batches whose bytes are intact survive (padding may restore a tail that was zeros)
    let after = std::fs::read(&p).unwrap();
    let mut complete = (0..n)
        .take_while(|&i| {
            let (s, e) = (ends[i] as usize, ends[i + 1] as usize);
            e <= after.len() && after[s..e] == original[s..e]
        })
        .count();
    if garble && complete < n {
        // the leader epoch (bytes 12..16) is not covered by the CRC: that damage goes unnoticed
        let rel = cut.min(total - 1) - ends[complete];
        if (12..16).contains(&rel) {
            complete = n;
        }
    }
    let expected_end: i64 = (0..complete).map(|i| 1 + (i % 4) as i64).sum();
    let log = open(fs, dir.path(), cfg, 0, false);
    assert_eq!(log.log_end_offset(), Offset(expected_end));
    let hs = read_all(&log);
    assert_eq!(hs.len(), complete);
    let info = append(&log, simple_batch(1, 1, 0), 0);
    assert_eq!(info.base_offset, Offset(expected_end));
    assert_eq!(read_all(&log).len(), complete + 1);
}

#[test]
fn torn_fixed_cases() {
    torn(StdFileSystem, 10, 0.0, false, 0);
    torn(StdFileSystem, 10, 0.5, false, 0);
    torn(StdFileSystem, 10, 0.999, true, 0);
    torn(AlignedFs, 10, 0.3, false, 100);
    torn(AlignedFs, 10, 1.0, false, 4000); // clean data, padded tail
}

#[test]
fn crash_leaves_padding_aligned() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(AlignedFs, dir.path(), small_cfg(), 0, false);
    for i in 0..7 {
        append(&log, simple_batch(1, 10, i), 0);
    }
    drop(log); // crash: file ends with zero padding
    let p = dir.path().join(format!("{:020}.log", 0));
    assert_eq!(std::fs::metadata(&p).unwrap().len() % 4096, 0);
    let log = open(AlignedFs, dir.path(), small_cfg(), 0, false);
    assert_eq!(log.log_end_offset(), Offset(7));
    append(&log, simple_batch(1, 10, 0), 0);
    block_on(log.close()).unwrap();
    assert_eq!(
        std::fs::metadata(&p).unwrap().len(),
        8 * simple_batch(1, 10, 0).len() as u64
    );
    let log = open(AlignedFs, dir.path(), small_cfg(), 0, true);
    check_log(&log, 8, 1);
}

/// The active segment's file is reserved ahead of the appends (O_DIRECT): it is longer than the
/// log while the segment is active; a crash leaves the reserved zeros, which recovery cuts; a roll
/// and a clean close truncate the file to its logical size. `AlignedFile` asserts that no append
/// covers both written and reserved pages.
#[test]
fn reserved_space_is_cut_by_recovery_and_close() {
    assert_eq!(crate::segment::reserve_window(1 << 30), 4 << 20);
    assert_eq!(
        crate::segment::reserve_window(8 << 10),
        0,
        "small segments: no reservation"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 3 << 20,
        index_interval_bytes: 4096,
        ..Default::default()
    };
    let path = |base: i64| dir.path().join(format!("{base:020}.log"));
    let on_disk = |base: i64| std::fs::metadata(path(base)).unwrap().len();
    let log = open(AlignedFs, dir.path(), config.clone(), 0, false);
    // Batches of 1 to 6 pages and odd sizes: flushes start in a partly written page and cross into
    // reserved ones, and cross the reservation windows (192 KiB here).
    let (mut logical, mut offsets) = (0u64, 0i64);
    for i in 0..400 {
        let batch = simple_batch(1, 700 + (i * 977) % 24_000, i as i64);
        logical += batch.len() as u64;
        append(&log, batch, 0);
        offsets += 1;
        if log.segment_count() == 1 {
            assert!(
                on_disk(0) > logical,
                "reserved ahead: {} <= {logical}",
                on_disk(0)
            );
            assert_eq!(
                on_disk(0) % crate::segment::reserve_window(config.segment_bytes),
                0
            );
        }
    }
    let bases: Vec<i64> = log.segment_bases().iter().map(|base| base.0).collect();
    assert!(bases.len() > 1, "rolled at least once");
    let active_base = *bases.last().unwrap();
    let total = |bases: &[i64]| bases.iter().map(|base| on_disk(*base)).sum::<u64>();
    // Rolled segments were truncated to their logical size; the active one is reserved ahead.
    assert!(total(&bases[..bases.len() - 1]) < logical);
    assert!(total(&bases) > logical);
    assert_eq!(
        on_disk(active_base) % crate::segment::reserve_window(config.segment_bytes),
        0
    );
    drop(log); // crash: the active segment keeps its reserved zeros
    let log = open(AlignedFs, dir.path(), config.clone(), 0, false);
    assert_eq!(log.log_end_offset(), Offset(offsets));
    check_log(&log, offsets as usize, 1);
    assert_eq!(total(&bases), logical, "recovery cut the zeros");
    let last = simple_batch(1, 5000, 1);
    logical += last.len() as u64;
    append(&log, last, 0);
    assert!(total(&bases) > logical, "reserved again");
    block_on(log.close()).unwrap();
    assert_eq!(total(&bases), logical, "a clean close truncates");
    let log = open(AlignedFs, dir.path(), config, 0, true);
    check_log(&log, offsets as usize + 1, 1);
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn torn_tail_recovery(n in 1usize..30, frac in 0.0f64..1.0, garble: bool, pad in 0usize..5000, aligned: bool) {
            if aligned {
                torn(AlignedFs, n, frac, garble, pad);
            } else {
                torn(StdFileSystem, n, frac, garble, pad);
            }
        }
    }
}

proptest::proptest! {
    /// The appender's gather writes (partial page rewritten in front, zero padding behind) leave
    /// exactly the appended bytes in the file, whatever the chunk sizes and flush points, and a reopened
    /// appender continues from the logical size.
    #[test]
    fn appender_writes_exactly_what_was_appended(
        chunks in proptest::collection::vec((1usize..9000, proptest::bool::ANY), 1..40)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut expected = Vec::new();
        block_on(async {
            let file = Rc::new(AlignedFs.open(&path, FileKind::SegmentData, true).await.unwrap());
            let mut appender = Rc::new(crate::appender::Appender::open(file, 0).await.unwrap());
            for (index, (size, flush)) in chunks.iter().enumerate() {
                let chunk: Vec<u8> = (0..*size).map(|i| (i + index) as u8 | 1).collect();
                expected.extend_from_slice(&chunk);
                appender.append(Bytes::from(chunk));
                if *flush {
                    appender.flush().await.unwrap();
                    proptest::prop_assert_eq!(appender.written_size(), expected.len() as u64);
                }
                if index % 7 == 6 {
                    appender.flush().await.unwrap();
                    let file = Rc::new(AlignedFs.open(&path, FileKind::SegmentData, false).await.unwrap());
                    appender = Rc::new(crate::appender::Appender::open(file, expected.len() as u64).await.unwrap());
                }
            }
            appender.flush().await.unwrap();
            Ok(())
        })?;
        let on_disk = std::fs::read(&path).unwrap();
        proptest::prop_assert!(on_disk.len() >= expected.len() && on_disk.len().is_multiple_of(4096));
        proptest::prop_assert_eq!(&on_disk[..expected.len()], &expected[..]);
        proptest::prop_assert!(on_disk[expected.len()..].iter().all(|&b| b == 0));
    }
}
