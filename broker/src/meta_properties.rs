//! `meta.properties`: the identity of a data directory (Kafka's file name and format), the cluster it
//! belongs to and the node that owns it.
//!
//! Written once a node knows its cluster, then checked at every start so that a directory is never
//! served by another node or joined to another cluster:
//!
//! ```text
//! #Written by the broker; do not edit
//! cluster.id=MkU3OEVBNTcwNTJENDM2Qk
//! node.id=1
//! version=1
//! ```
//!
//! Reading follows Java's properties files as far as this file needs: blank lines and lines starting
//! with `#` or `!` are ignored, every other line is `key=value` (both trimmed), unknown keys are ignored.
//! `version` must be 1, `cluster.id` 1..=64 characters of `[A-Za-z0-9_-]`, `node.id` an integer. The file
//! is small; one over 64 KiB is refused rather than read.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub const META_PROPERTIES_FILE: &str = "meta.properties";
/// The only format version written and read.
const VERSION: &str = "1";
/// Largest file read.
const MAX_FILE_BYTES: u64 = 64 * 1024;
/// Longest cluster id accepted.
const MAX_CLUSTER_ID_LENGTH: usize = 64;
const HEADER: &str = "#Written by the broker; do not edit";

/// A data directory's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaProperties {
    pub cluster_id: String,
    pub node_id: i32,
}

/// Why `meta.properties` cannot be read, written, or accepted.
#[derive(Debug, thiserror::Error)]
pub enum MetaPropertiesError {
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is malformed ({reason}); restore it, or empty the data directory to start it afresh"
    )]
    Malformed { path: PathBuf, reason: String },
    #[error(
        "data directory {} belongs to node {found} ({}) but this node is {configured}; \
         point --data-dir at this node's directory, or set --node-id {found}",
        data_dir(path).display(),
        META_PROPERTIES_FILE
    )]
    NodeIdMismatch {
        path: PathBuf,
        found: i32,
        configured: i32,
    },
    #[error(
        "data directory {} belongs to cluster {found} ({}) but the quorum's cluster is {quorum}; \
         this directory is from another cluster: point --data-dir elsewhere or empty it",
        data_dir(path).display(),
        META_PROPERTIES_FILE
    )]
    ClusterIdMismatch {
        path: PathBuf,
        found: String,
        quorum: String,
    },
}

/// The directory holding the file at `path`.
fn data_dir(path: &Path) -> &Path {
    path.parent().unwrap_or(path)
}

/// Whether `cluster_id` is one this file may hold: 1..=64 characters of `[A-Za-z0-9_-]` (Kafka's are
/// 22 characters of URL-safe base64).
pub fn is_valid_cluster_id(cluster_id: &str) -> bool {
    !cluster_id.is_empty()
        && cluster_id.len() <= MAX_CLUSTER_ID_LENGTH
        && cluster_id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-'))
}

impl MetaProperties {
    /// The identity recorded in `data_dir`; `None` when it has no `meta.properties`.
    pub fn load(data_dir: &Path) -> Result<Option<MetaProperties>, MetaPropertiesError> {
        let path = data_dir.join(META_PROPERTIES_FILE);
        let io_error = |source| MetaPropertiesError::Io {
            path: path.clone(),
            source,
        };
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error(error)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_error)?;
        let malformed = |reason: String| MetaPropertiesError::Malformed {
            path: path.clone(),
            reason,
        };
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(malformed(format!("larger than {MAX_FILE_BYTES} bytes")));
        }
        let text = String::from_utf8(bytes).map_err(|_| malformed("not UTF-8 text".into()))?;
        Self::parse(&text).map(Some).map_err(malformed)
    }

    /// Reads the file's text (module docs); the error says what is wrong.
    fn parse(text: &str) -> Result<MetaProperties, String> {
        let mut version = None;
        let mut cluster_id = None;
        let mut node_id = None;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("line {} is not key=value", number + 1))?;
            let value = value.trim();
            match key.trim() {
                "version" => version = Some(value),
                "cluster.id" => cluster_id = Some(value),
                "node.id" => node_id = Some(value),
                _ => {}
            }
        }
        match version {
            Some(VERSION) => {}
            Some(other) => return Err(format!("version {other:?} is not {VERSION}")),
            None => return Err("no version".into()),
        }
        let cluster_id = cluster_id.ok_or("no cluster.id")?;
        if !is_valid_cluster_id(cluster_id) {
            return Err(format!(
                "cluster.id {cluster_id:?} is not 1 to {MAX_CLUSTER_ID_LENGTH} characters of \
                 A-Z, a-z, 0-9, '_' and '-'"
            ));
        }
        let node_id = node_id.ok_or("no node.id")?;
        let node_id = node_id
            .parse::<i32>()
            .map_err(|_| format!("node.id {node_id:?} is not an integer"))?;
        Ok(MetaProperties {
            cluster_id: cluster_id.to_string(),
            node_id,
        })
    }

    /// The file's text.
    fn render(&self) -> String {
        format!(
            "{HEADER}\ncluster.id={}\nnode.id={}\nversion={VERSION}\n",
            self.cluster_id, self.node_id
        )
    }

    /// Writes `meta.properties` into `data_dir` atomically: a temporary file, fsynced, renamed over the
    /// file, then the directory fsynced. Refuses a cluster id the file could not be read back with.
    pub fn persist(&self, data_dir: &Path) -> Result<(), MetaPropertiesError> {
        let path = data_dir.join(META_PROPERTIES_FILE);
        if !is_valid_cluster_id(&self.cluster_id) {
            return Err(MetaPropertiesError::Malformed {
                path,
                reason: format!("cluster id {:?} cannot be written", self.cluster_id),
            });
        }
        let temporary = data_dir.join(format!("{META_PROPERTIES_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(self.render().as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)?;
            std::fs::File::open(data_dir)?.sync_all()
        };
        write().map_err(|source| MetaPropertiesError::Io {
            path: path.clone(),
            source,
        })
    }

    /// Refuses a directory recorded for another node than `configured`.
    pub fn check_node_id(
        &self,
        data_dir: &Path,
        configured: i32,
    ) -> Result<(), MetaPropertiesError> {
        if self.node_id == configured {
            return Ok(());
        }
        Err(MetaPropertiesError::NodeIdMismatch {
            path: data_dir.join(META_PROPERTIES_FILE),
            found: self.node_id,
            configured,
        })
    }

    /// Refuses a directory recorded for another cluster than the quorum's (`quorum`).
    pub fn check_cluster_id(
        &self,
        data_dir: &Path,
        quorum: &str,
    ) -> Result<(), MetaPropertiesError> {
        if self.cluster_id == quorum {
            return Ok(());
        }
        Err(MetaPropertiesError::ClusterIdMismatch {
            path: data_dir.join(META_PROPERTIES_FILE),
            found: self.cluster_id.clone(),
            quorum: quorum.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> MetaProperties {
        MetaProperties {
            cluster_id: "MkU3OEVBNTcwNTJENDM2Qk".into(),
            node_id: 3,
        }
    }

    fn load_text(text: &[u8]) -> Result<Option<MetaProperties>, MetaPropertiesError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(META_PROPERTIES_FILE), text).unwrap();
        MetaProperties::load(dir.path())
    }

    fn malformed_reason(text: &[u8]) -> String {
        match load_text(text) {
            Err(MetaPropertiesError::Malformed { reason, .. }) => reason,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(text)),
        }
    }

    #[test]
    fn an_absent_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(MetaProperties::load(dir.path()).unwrap(), None);
    }

    #[test]
    fn persist_then_load_round_trips_in_kafkas_format() {
        let dir = tempfile::tempdir().unwrap();
        identity().persist(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(META_PROPERTIES_FILE)).unwrap();
        assert_eq!(
            text,
            "#Written by the broker; do not edit\ncluster.id=MkU3OEVBNTcwNTJENDM2Qk\nnode.id=3\nversion=1\n"
        );
        assert!(!dir.path().join("meta.properties.tmp").exists());
        assert_eq!(MetaProperties::load(dir.path()).unwrap(), Some(identity()));
        // Persisting again replaces the file.
        let other = MetaProperties {
            node_id: 4,
            ..identity()
        };
        other.persist(dir.path()).unwrap();
        assert_eq!(MetaProperties::load(dir.path()).unwrap(), Some(other));
    }

    #[test]
    fn kafkas_own_files_are_read() {
        let text = b"#\n#Thu Jan 01 00:00:00 UTC 2026\n! a comment\n\n  node.id = 3 \r\n\
                     directory.id=J8aAPcfLQt2bqs1JT_rMgQ\nversion=1\ncluster.id=MkU3OEVBNTcwNTJENDM2Qk\n";
        assert_eq!(load_text(text).unwrap(), Some(identity()));
    }

    #[test]
    fn malformed_files_are_refused_with_a_reason() {
        for (text, reason) in [
            (
                &b"cluster.id=abc\nnode.id=1\n"[..],
                "no version".to_string(),
            ),
            (
                b"version=0\ncluster.id=abc\nnode.id=1\n",
                "version \"0\" is not 1".into(),
            ),
            (b"version=1\nnode.id=1\n", "no cluster.id".into()),
            (b"version=1\ncluster.id=abc\n", "no node.id".into()),
            (
                b"version=1\ncluster.id=\nnode.id=1\n",
                "cluster.id \"\" is not 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'".into(),
            ),
            (
                b"version=1\ncluster.id=a/b\nnode.id=1\n",
                "cluster.id \"a/b\" is not".into(),
            ),
            (
                b"version=1\ncluster.id=abc\nnode.id=one\n",
                "node.id \"one\" is not an integer".into(),
            ),
            (
                b"version=1\ncluster.id=abc\nnode.id=1\njunk\n",
                "line 4 is not key=value".into(),
            ),
            (
                b"version=1\ncluster.id=\xff\nnode.id=1\n",
                "not UTF-8 text".into(),
            ),
            (
                format!("version=1\ncluster.id={}\nnode.id=1\n", "c".repeat(65)).as_bytes(),
                format!("cluster.id \"{}\" is not 1 to 64", "c".repeat(65)),
            ),
        ] {
            let got = malformed_reason(text);
            assert!(
                got.starts_with(&reason),
                "{got:?} does not start with {reason:?}"
            );
        }
        let mut huge = b"version=1\ncluster.id=abc\nnode.id=1\n".to_vec();
        huge.extend(vec![b'#'; 64 * 1024]);
        assert_eq!(malformed_reason(&huge), "larger than 65536 bytes");
    }

    #[test]
    fn an_unwritable_cluster_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bad = MetaProperties {
            cluster_id: "a\nnode.id=9".into(),
            node_id: 1,
        };
        assert!(matches!(
            bad.persist(dir.path()),
            Err(MetaPropertiesError::Malformed { .. })
        ));
        assert_eq!(MetaProperties::load(dir.path()).unwrap(), None);
    }

    #[test]
    fn another_node_or_cluster_is_refused_with_an_operators_message() {
        let dir = Path::new("/x");
        let identity = MetaProperties {
            cluster_id: "AbC".into(),
            node_id: 1,
        };
        identity.check_node_id(dir, 1).unwrap();
        identity.check_cluster_id(dir, "AbC").unwrap();
        assert_eq!(
            identity.check_cluster_id(dir, "XyZ").unwrap_err().to_string(),
            "data directory /x belongs to cluster AbC (meta.properties) but the quorum's cluster \
             is XyZ; this directory is from another cluster: point --data-dir elsewhere or empty it"
        );
        assert_eq!(
            identity.check_node_id(dir, 2).unwrap_err().to_string(),
            "data directory /x belongs to node 1 (meta.properties) but this node is 2; point \
             --data-dir at this node's directory, or set --node-id 1"
        );
    }

    #[test]
    fn an_unreadable_file_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: opening works on Linux, reading fails.
        std::fs::create_dir(dir.path().join(META_PROPERTIES_FILE)).unwrap();
        assert!(matches!(
            MetaProperties::load(dir.path()),
            Err(MetaPropertiesError::Io { .. })
        ));
    }
}
