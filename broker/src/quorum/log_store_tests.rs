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

fn snapshot_at(index: u64, term: u64, data: &[u8]) -> Snapshot {
    let mut snapshot = Snapshot::default();
    snapshot.mut_metadata().index = index;
    snapshot.mut_metadata().term = term;
    snapshot
        .mut_metadata()
        .set_conf_state(raft::prelude::ConfState::from((vec![1, 2, 3], vec![])));
    snapshot.set_data(data.to_vec().into());
    snapshot
}

#[test]
fn compaction_rewrites_the_file_and_replay_starts_from_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = QuorumLog::open(dir.path(), &[1, 2, 3]).unwrap();
        let entries: Vec<Entry> = (1..=6).map(|index| entry(index, 1, b"record")).collect();
        persist(&log, &entries, Some(&hard_state(1, 1, 4)));
        assert!(log.written_since_snapshot() > 0);
        Simulation::new()
            .block_on(log.compact(snapshot_at(4, 1, b"image at 4")))
            .expect("compacts");
        assert_eq!(
            log.written_since_snapshot(),
            2 * entries[0].compute_size() as u64
        );
        // Appends go on in the rewritten file.
        persist(&log, &[entry(7, 2, b"after")], Some(&hard_state(2, 1, 7)));
    }
    // A rewrite a crash interrupted before its rename leaves a stray file: removed, the log kept.
    std::fs::write(
        dir.path().join(QUORUM_DIR).join(REWRITTEN_FILE),
        b"half a rewrite",
    )
    .unwrap();
    let log = QuorumLog::open(dir.path(), &[1, 2, 3]).unwrap();
    assert!(!dir.path().join(QUORUM_DIR).join(REWRITTEN_FILE).exists());
    let storage = log.storage();
    assert_eq!(
        (
            storage.first_index().unwrap(),
            storage.last_index().unwrap()
        ),
        (5, 7)
    );
    assert_eq!(storage.term(4).unwrap(), 1);
    assert_eq!(storage.snapshot(0, 2).unwrap().get_data(), b"image at 4");
    assert_eq!(
        storage.initial_state().unwrap().hard_state,
        hard_state(2, 1, 7)
    );
    // Opened with other voters than its snapshot names: refused as a damaged log would be.
    assert!(QuorumLog::open(dir.path(), &[1, 2]).is_err());
}

#[test]
fn an_installed_snapshot_replaces_the_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = QuorumLog::open(dir.path(), &[1, 2, 3]).unwrap();
        persist(
            &log,
            &[entry(1, 1, b"a"), entry(2, 1, b"b")],
            Some(&hard_state(1, 0, 1)),
        );
        Simulation::new()
            .block_on(log.install(snapshot_at(40, 3, b"the leader's image")))
            .expect("installs");
    }
    let log = QuorumLog::open(dir.path(), &[1, 2, 3]).unwrap();
    let storage = log.storage();
    assert_eq!(
        (
            storage.first_index().unwrap(),
            storage.last_index().unwrap()
        ),
        (41, 40)
    );
    let state = storage.initial_state().unwrap();
    assert_eq!((state.hard_state.commit, state.hard_state.term), (40, 3));
    assert_eq!(
        storage.snapshot(0, 1).unwrap().get_data(),
        b"the leader's image"
    );
}
