//! The quorum's durable state: its Raft log and hard state (term, vote, commit), in one append-only file,
//! `<data-dir>/__cluster_metadata-0/quorum.log`, replayed into raft-rs's in-memory `MemStorage` at start.
//!
//! Format: a sequence of records, each
//!
//! ```text
//! length: u32 LE   (of kind + payload)
//! crc:    u32 LE   (CRC-32C of kind + payload)
//! kind:   u8       1 = voters, 2 = hard state, 3 = entry, 4 = snapshot
//! payload          voters: count u32 LE, then each Raft id u64 LE
//!                  hard state, entry, snapshot: the protobuf encoding (raft's eraftpb; a snapshot's
//!                  data is the image, `snapshot`)
//! ```
//!
//! The first record is the voter set the log was created with; a start with another voter set is refused
//! (changing the voters is not supported yet). A snapshot record, if any, comes second: the entries up to
//! its index are gone and the image at that index is its data. A later entry record with an index at or
//! below the last one replaces that suffix (Raft's conflict truncation), so replay rebuilds the state
//! Raft last persisted. Each batch of records the Ready loop writes is fsynced before
//! any message that depends on it is sent. A torn tail (the last record cut short or failing its CRC,
//! from a crash mid-write, which was never fsynced and so never acknowledged) is cut off at start; a bad
//! record with more after it is damage, not a torn write, and the log is refused (cutting it would drop
//! fsynced votes and entries, which Raft's safety rests on).
//!
//! Compaction (`compact`, once `metadata_log_max_record_bytes_between_snapshots` of entries were written
//! since the last snapshot) and a follower's installing of the leader's snapshot (`install`) rewrite the
//! file whole: voters, snapshot, hard state, the entries after the snapshot, into `quorum.log.tmp`,
//! fsynced, then renamed over `quorum.log` and the directory fsynced. A crash leaves either file whole;
//! a leftover `.tmp` is removed at start.

use super::memory_log::MemoryLog;
use super::snapshot::MAX_SNAPSHOT_BYTES;
use protobuf::Message as _;
use raft::prelude::{Entry, HardState, Snapshot};
use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// The quorum's directory in the data directory (Kafka's name for the metadata log's partition).
pub const QUORUM_DIR: &str = "__cluster_metadata-0";
pub const QUORUM_LOG_FILE: &str = "quorum.log";
const REWRITTEN_FILE: &str = "quorum.log.tmp";

const VOTERS: u8 = 1;
const HARD_STATE: u8 = 2;
const ENTRY: u8 = 3;
const SNAPSHOT: u8 = 4;
const HEADER_BYTES: usize = 8;
/// Largest record accepted at replay: a snapshot (an entry holds one metadata record, at most 1 MiB).
const MAX_RECORD_BYTES: usize = MAX_SNAPSHOT_BYTES + (1 << 20);

#[derive(Debug, Error)]
pub enum QuorumLogError {
    #[error("quorum log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "quorum log {path} was created with the voters {recorded:?} but controller_quorum_voters now \
         names {configured:?} (Raft ids are node ids + 1); changing the voter set is not supported"
    )]
    VotersChanged {
        path: PathBuf,
        recorded: Vec<u64>,
        configured: Vec<u64>,
    },
    #[error("quorum log {path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
}

pub struct QuorumLog {
    path: PathBuf,
    voters: Vec<u64>,
    /// The file appended to; replaced when the log is rewritten.
    file: RefCell<Arc<std::fs::File>>,
    /// Bytes of entries written since the last snapshot (or since the start of the log).
    written_since_snapshot: Cell<u64>,
    storage: MemoryLog,
}

impl QuorumLog {
    /// Opens (or creates) the quorum log under `data_dir` and replays it. `voters` are Raft ids.
    pub fn open(data_dir: &Path, voters: &[u64]) -> Result<QuorumLog, QuorumLogError> {
        let dir = data_dir.join(QUORUM_DIR);
        let path = dir.join(QUORUM_LOG_FILE);
        let io = |source| QuorumLogError::Io {
            path: path.clone(),
            source,
        };
        let created = !path.exists();
        std::fs::create_dir_all(&dir).map_err(io)?;
        // A rewrite a crash interrupted before its rename: the log it would have replaced is whole.
        let _ = std::fs::remove_file(dir.join(REWRITTEN_FILE));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let (records, valid) = parse(&bytes);
        if valid < bytes.len() && !is_torn_tail(&bytes[valid..]) {
            return Err(damaged(
                &path,
                &format!(
                    "a bad record at byte {valid} with more after it (not a torn write); restore the \
                     file, or remove this node's directory to join afresh"
                ),
            ));
        }
        if valid < bytes.len() {
            tracing::warn!(path = %path.display(), cut = bytes.len() - valid,
                "quorum log: cutting a torn tail (a write interrupted by a crash)");
            file.set_len(valid as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        let storage = MemoryLog::new(voters);
        let written_since_snapshot = Cell::new(0);
        let mut records = records.into_iter().peekable();
        match records.next() {
            None => {
                file.write_all(&encode_record(VOTERS, &encode_voters(voters)))
                    .map_err(io)?;
                file.sync_all().map_err(io)?;
                if created {
                    sync_directory(&dir);
                    sync_directory(data_dir);
                }
            }
            Some((VOTERS, payload)) => {
                let recorded =
                    decode_voters(payload).ok_or_else(|| damaged(&path, "bad voters"))?;
                if recorded != voters {
                    return Err(QuorumLogError::VotersChanged {
                        path,
                        recorded,
                        configured: voters.to_vec(),
                    });
                }
            }
            Some(_) => return Err(damaged(&path, "does not start with its voters")),
        }
        {
            let mut core = storage.core_mut();
            if let Some((SNAPSHOT, payload)) = records.peek() {
                let snapshot = Snapshot::parse_from_bytes(payload)
                    .map_err(|error| damaged(&path, &error.to_string()))?;
                let mut recorded: Vec<u64> =
                    snapshot.get_metadata().get_conf_state().voters.clone();
                recorded.sort_unstable();
                let mut configured = voters.to_vec();
                configured.sort_unstable();
                if recorded != configured {
                    return Err(damaged(&path, "its snapshot names other voters"));
                }
                core.install(snapshot);
                records.next();
            }
            let mut last = core.last_index();
            for (kind, payload) in records {
                if kind == ENTRY {
                    written_since_snapshot.set(written_since_snapshot.get() + payload.len() as u64);
                }
                match kind {
                    HARD_STATE => {
                        let state = HardState::parse_from_bytes(payload)
                            .map_err(|error| damaged(&path, &error.to_string()))?;
                        core.hard_state = state;
                    }
                    ENTRY => {
                        let entry = Entry::parse_from_bytes(payload)
                            .map_err(|error| damaged(&path, &error.to_string()))?;
                        if entry.index < core.first_index() || entry.index > last + 1 {
                            return Err(damaged(
                                &path,
                                &format!("entry {} follows entry {last}", entry.index),
                            ));
                        }
                        last = entry.index;
                        core.append(&[entry]);
                    }
                    other => return Err(damaged(&path, &format!("record kind {other}"))),
                }
            }
            // The commit index never passes the last entry kept (it can only if entries were lost).
            if core.hard_state.commit > last {
                tracing::warn!(
                    commit = core.hard_state.commit,
                    last,
                    "quorum log: commit index beyond the last entry; lowering it"
                );
                core.hard_state.commit = last;
            }
            let snapshot_index = core.snapshot().get_metadata().index;
            if core.hard_state.commit < snapshot_index {
                core.hard_state.commit = snapshot_index;
            }
        }
        Ok(QuorumLog {
            path,
            voters: voters.to_vec(),
            file: RefCell::new(Arc::new(file)),
            written_since_snapshot,
            storage,
        })
    }

    /// The in-memory log raft-rs reads (shared: clones share one core).
    pub fn storage(&self) -> MemoryLog {
        self.storage.clone()
    }

    /// Bytes of entries written since the last snapshot.
    pub fn written_since_snapshot(&self) -> u64 {
        self.written_since_snapshot.get()
    }

    /// Drops the entries up to `snapshot`'s index, which this node has applied (its data is the image
    /// there), and rewrites the file without them.
    pub async fn compact(&self, snapshot: Snapshot) -> Result<(), QuorumLogError> {
        self.storage.core_mut().compact(snapshot);
        self.rewrite().await
    }

    /// Replaces the whole log with the leader's `snapshot` (a follower too far behind for entries).
    pub async fn install(&self, snapshot: Snapshot) -> Result<(), QuorumLogError> {
        self.storage.core_mut().install(snapshot);
        self.rewrite().await
    }

    /// Writes the log as memory holds it into a new file that replaces the old (see the module
    /// documentation).
    async fn rewrite(&self) -> Result<(), QuorumLogError> {
        let mut bytes = encode_record(VOTERS, &encode_voters(&self.voters));
        let mut entry_bytes = 0;
        {
            let core = self.storage.core();
            bytes.extend(encode_record(
                SNAPSHOT,
                &core.snapshot().write_to_bytes().expect("encodes"),
            ));
            bytes.extend(encode_record(
                HARD_STATE,
                &core.hard_state.write_to_bytes().expect("encodes"),
            ));
            for entry in core.entries() {
                let payload = entry.write_to_bytes().expect("encodes");
                entry_bytes += payload.len() as u64;
                bytes.extend(encode_record(ENTRY, &payload));
            }
        }
        let path = self.path.clone();
        let file = shard::task::spawn_blocking(move || {
            let dir = path.parent().expect("in the quorum directory");
            let rewritten = dir.join(REWRITTEN_FILE);
            let mut file = std::fs::File::create(&rewritten)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&rewritten, &path)?;
            std::fs::File::open(dir)?.sync_all()?;
            std::fs::OpenOptions::new().append(true).open(&path)
        })
        .await
        .map_err(|source| QuorumLogError::Io {
            path: self.path.clone(),
            source,
        })?;
        *self.file.borrow_mut() = Arc::new(file);
        self.written_since_snapshot.set(entry_bytes);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes `entries` and `hard_state` durable (one write, one fsync, on the runtime's blocking pool),
    /// then adds them to the in-memory storage.
    pub async fn persist(
        &self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), QuorumLogError> {
        if entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        for entry in entries {
            let payload = entry.write_to_bytes().expect("encodes");
            self.written_since_snapshot
                .set(self.written_since_snapshot.get() + payload.len() as u64);
            bytes.extend(encode_record(ENTRY, &payload));
        }
        if let Some(state) = hard_state {
            bytes.extend(encode_record(
                HARD_STATE,
                &state.write_to_bytes().expect("encodes"),
            ));
        }
        let file = self.file.borrow().clone();
        shard::task::spawn_blocking(move || {
            (&*file).write_all(&bytes)?;
            file.sync_data()
        })
        .await
        .map_err(|source| QuorumLogError::Io {
            path: self.path.clone(),
            source,
        })?;
        let mut core = self.storage.core_mut();
        core.append(entries);
        if let Some(state) = hard_state {
            core.hard_state = state.clone();
        }
        Ok(())
    }
}

fn damaged(path: &Path, reason: &str) -> QuorumLogError {
    QuorumLogError::Damaged {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn encode_record(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(1 + payload.len());
    body.push(kind);
    body.extend_from_slice(payload);
    let mut record = Vec::with_capacity(HEADER_BYTES + body.len());
    record.extend_from_slice(&(body.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    record.extend_from_slice(&body);
    record
}

/// The valid records of `bytes` (kind, payload) and how many bytes they span.
fn parse(bytes: &[u8]) -> (Vec<(u8, &[u8])>, usize) {
    let mut records = Vec::new();
    let mut position = 0;
    while bytes.len() - position >= HEADER_BYTES {
        let length = u32::from_le_bytes(bytes[position..position + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[position + 4..position + 8].try_into().unwrap());
        let start = position + HEADER_BYTES;
        if length == 0 || length > MAX_RECORD_BYTES || bytes.len() - start < length {
            break;
        }
        let body = &bytes[start..start + length];
        if crc32c::crc32c(body) != crc {
            break;
        }
        records.push((body[0], &body[1..]));
        position = start + length;
    }
    (records, position)
}

/// Whether `rest`, the bytes from the first bad record on, is one interrupted write: a header cut
/// short, or a record that reaches (or passes) the end of the file.
fn is_torn_tail(rest: &[u8]) -> bool {
    if rest.len() < HEADER_BYTES {
        return true;
    }
    let length = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
    length == 0 && rest.iter().all(|byte| *byte == 0) || HEADER_BYTES + length >= rest.len()
}

fn encode_voters(voters: &[u64]) -> Vec<u8> {
    let mut out = (voters.len() as u32).to_le_bytes().to_vec();
    for voter in voters {
        out.extend_from_slice(&voter.to_le_bytes());
    }
    out
}

fn decode_voters(payload: &[u8]) -> Option<Vec<u64>> {
    let count = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?) as usize;
    let ids = payload.get(4..)?;
    if ids.len() != count * 8 {
        return None;
    }
    Some(
        ids.chunks_exact(8)
            .map(|id| u64::from_le_bytes(id.try_into().unwrap()))
            .collect(),
    )
}

fn sync_directory(dir: &Path) {
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}

#[cfg(test)]
#[path = "log_store_tests.rs"]
mod tests;
