use super::*;
use raft::Storage;
use shard::Simulation;

fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        data: data.to_vec().into(),
        ..Default::default()
    }
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

fn persist(log: &QuorumLog, entries: &[Entry], state: Option<&HardState>) {
    Simulation::new()
        .block_on(log.persist(entries, state))
        .expect("persists");
}

#[test]
fn replay_rebuilds_entries_hard_state_and_conflict_truncation() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = QuorumLog::open(dir.path(), &[1, 2, 3]).unwrap();
        persist(
            &log,
            &[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")],
            Some(&hard_state(1, 1, 1)),
        );
        // A new leader's entry replaces 3 (and nothing after it survives).
        persist(&log, &[entry(3, 2, b"C")], Some(&hard_state(2, 2, 3)));
    }
    let log = QuorumLog::open(dir.path(), &[1, 2, 3]).unwrap();
    let storage = log.storage();
    assert_eq!(storage.last_index().unwrap(), 3);
    let entries = storage
        .entries(1, 4, u64::MAX, raft::GetEntriesContext::empty(false))
        .unwrap();
    let data: Vec<&[u8]> = entries.iter().map(|entry| &entry.data[..]).collect();
    assert_eq!(data, vec![&b"a"[..], b"b", b"C"]);
    assert_eq!(entries[2].term, 2);
    let state = storage.initial_state().unwrap();
    assert_eq!(state.hard_state, hard_state(2, 2, 3));
    assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
}

#[test]
fn a_torn_tail_is_cut_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path;
    {
        let log = QuorumLog::open(dir.path(), &[1]).unwrap();
        persist(&log, &[entry(1, 1, b"kept")], Some(&hard_state(1, 1, 1)));
        persist(&log, &[entry(2, 1, b"torn")], None);
        path = log.path().to_path_buf();
    }
    let length = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(length - 3).unwrap();
    drop(file);
    let log = QuorumLog::open(dir.path(), &[1]).unwrap();
    assert_eq!(log.storage().last_index().unwrap(), 1);
    // The cut is made on disk too: what is appended next follows the kept records.
    persist(&log, &[entry(2, 1, b"again")], None);
    drop(log);
    let log = QuorumLog::open(dir.path(), &[1]).unwrap();
    let entries = log
        .storage()
        .entries(1, 3, u64::MAX, raft::GetEntriesContext::empty(false))
        .unwrap();
    assert_eq!(&entries[1].data[..], b"again");
}

#[test]
fn a_bad_record_with_more_after_it_is_refused_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path;
    let middle;
    {
        let log = QuorumLog::open(dir.path(), &[1]).unwrap();
        path = log.path().to_path_buf();
        persist(&log, &[entry(1, 1, b"first")], None);
        middle = std::fs::metadata(&path).unwrap().len() - 2;
        persist(&log, &[entry(2, 1, b"second")], Some(&hard_state(1, 1, 2)));
    }
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[middle as usize] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let error = QuorumLog::open(dir.path(), &[1]).err().expect("refused");
    assert!(matches!(error, QuorumLogError::Damaged { .. }), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");
}

#[test]
fn another_voter_set_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(QuorumLog::open(dir.path(), &[1, 2, 3]).unwrap());
    let error = QuorumLog::open(dir.path(), &[1, 2]).err().expect("refused");
    assert!(
        matches!(error, QuorumLogError::VotersChanged { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("[1, 2, 3]"), "{error}");
}

#[test]
fn a_commit_index_past_the_entries_is_lowered() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = QuorumLog::open(dir.path(), &[1]).unwrap();
        persist(&log, &[entry(1, 1, b"x")], Some(&hard_state(1, 1, 5)));
    }
    let log = QuorumLog::open(dir.path(), &[1]).unwrap();
    assert_eq!(log.storage().initial_state().unwrap().hard_state.commit, 1);
}

mod hostile_files {
    use super::*;
    use proptest::prelude::*;

    fn record(kind: u8, payload: &[u8]) -> Vec<u8> {
        super::super::encode_record(kind, payload)
    }

    fn arbitrary_entry() -> impl Strategy<Value = Vec<u8>> {
        (
            0u64..6,
            0u64..4,
            proptest::collection::vec(any::<u8>(), 0..8),
        )
            .prop_map(|(index, term, data)| {
                record(
                    ENTRY,
                    &entry(index, term, &data).write_to_bytes().expect("encodes"),
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the file holds after its voters — well-framed records of any kind and payload,
        /// entries out of order, raw garbage — opening it never panics: it loads or it is refused.
        #[test]
        fn any_file_loads_or_is_refused(
            records in proptest::collection::vec(
                prop_oneof![
                    arbitrary_entry(),
                    (0u8..6, proptest::collection::vec(any::<u8>(), 0..24))
                        .prop_map(|(kind, payload)| record(kind, &payload)),
                    proptest::collection::vec(any::<u8>(), 0..16),
                ],
                0..12,
            )
        ) {
            let dir = tempfile::tempdir().unwrap();
            drop(QuorumLog::open(dir.path(), &[1]).unwrap());
            let path = dir.path().join(QUORUM_DIR).join(QUORUM_LOG_FILE);
            let mut bytes = std::fs::read(&path).unwrap();
            for record in records {
                bytes.extend(record);
            }
            std::fs::write(&path, bytes).unwrap();
            if let Ok(log) = QuorumLog::open(dir.path(), &[1]) {
                let state = log.storage().initial_state().unwrap();
                prop_assert!(state.hard_state.commit <= log.storage().last_index().unwrap());
            }
        }
    }
}
