//! The quorum's wire protocol on the controller port (voters only; clients never connect here).
//!
//! Each voter dials every other voter and sends its Raft messages on that connection; it receives on the
//! connections the others dialed. A broker-only node dials every voter too, and its connections carry
//! messages both ways (the voter has no address to dial it; `observers`). A connection starts with a
//! handshake, then carries Raft messages:
//!
//! ```text
//! frame:     length u32 BE (of kind + payload, at most MAX_FRAME_BYTES; a Snapshot frame at most
//!            MAX_SNAPSHOT_FRAME_BYTES), kind u8, payload
//! kind 1 Hello     (dialer → listener): magic "KQRM", protocol version u16, node id i32,
//!                  cluster id: u8 length (0 = not formatted yet) + ASCII bytes
//! kind 2 HelloAck  (listener → dialer): accepted u8 (0 | 1), node id i32, cluster id as in Hello
//! kind 3 Raft      (dialer → listener; and back to a broker-only dialer): one raft-rs
//!                  `eraftpb::Message`, protobuf-encoded, any type but a snapshot
//! kind 5 Snapshot  (likewise): one raft-rs `MsgSnapshot` message, protobuf-encoded (its data is the
//!                  image, `snapshot`)
//! kind 4 Ping      (dialer → listener): nothing; sent after `KEEPALIVE_INTERVAL` without a message, so
//!                  the listener can close a connection silent for `IDLE_TIMEOUT` (a peer gone without
//!                  a FIN) and never keeps a slot for a dead one
//! ```
//!
//! The listener refuses (accepted = 0, then closes) a dialer that names this node's own id, is not a
//! voter when `observers::MAX_OBSERVERS` broker-only nodes are connected already, speaks another
//! protocol version, or belongs to another cluster (both formatted, ids differ). The
//! dialer learns the listener's cluster id from the answer either way, which is how a node started on a
//! directory of another cluster finds out (see `transport::Identity`).

use super::node_of;
use futures_channel::mpsc;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use std::io;
use std::time::Duration;

pub const PROTOCOL_VERSION: u16 = 0;
const MAGIC: &[u8; 4] = b"KQRM";
/// Largest frame read: a Raft message carries at most `MAX_ENTRY_BYTES_PER_MESSAGE` of entries.
pub const MAX_FRAME_BYTES: usize = 4 << 20;
/// Largest snapshot frame read: a snapshot and its message's fields.
pub const MAX_SNAPSHOT_FRAME_BYTES: usize = super::snapshot::MAX_SNAPSHOT_BYTES + (64 << 10);
/// Bytes of a frame's body allocated before they arrive (a large frame grows as it is read, so a
/// length alone reserves no more than this).
const READ_CHUNK_BYTES: usize = 1 << 20;
/// Largest handshake frame.
pub const MAX_HELLO_BYTES: usize = 512;

pub const HELLO: u8 = 1;
pub const HELLO_ACK: u8 = 2;
pub const RAFT: u8 = 3;
pub const PING: u8 = 4;
pub const SNAPSHOT: u8 = 5;

/// A dialer with nothing to send sends a ping this often.
pub const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
/// A listener closes a connection that sent nothing for this long.
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Both sides of the handshake: who is speaking and which cluster its data directory belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Greeting {
    pub node_id: i32,
    pub cluster_id: Option<String>,
}

pub fn encode_hello(greeting: &Greeting) -> Vec<u8> {
    let mut payload = MAGIC.to_vec();
    payload.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    put_greeting(&mut payload, greeting);
    frame(HELLO, &payload)
}

pub fn encode_hello_ack(accepted: bool, greeting: &Greeting) -> Vec<u8> {
    let mut payload = vec![u8::from(accepted)];
    put_greeting(&mut payload, greeting);
    frame(HELLO_ACK, &payload)
}

pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.extend_from_slice(&((payload.len() + 1) as u32).to_be_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    out
}

fn put_greeting(out: &mut Vec<u8>, greeting: &Greeting) {
    out.extend_from_slice(&greeting.node_id.to_be_bytes());
    let id = greeting.cluster_id.as_deref().unwrap_or("");
    let id = &id.as_bytes()[..id.len().min(255)];
    out.push(id.len() as u8);
    out.extend_from_slice(id);
}

/// A Hello's greeting, or why it is refused.
pub fn decode_hello(payload: &[u8]) -> Result<Greeting, String> {
    let rest = payload
        .strip_prefix(MAGIC)
        .ok_or("not a quorum handshake")?;
    let version = u16::from_be_bytes(
        rest.get(..2)
            .ok_or("handshake ends early")?
            .try_into()
            .unwrap(),
    );
    if version != PROTOCOL_VERSION {
        return Err(format!(
            "quorum protocol version {version} (this node speaks {PROTOCOL_VERSION})"
        ));
    }
    decode_greeting(&rest[2..])
}

/// A HelloAck: accepted, and the listener's greeting.
pub fn decode_hello_ack(payload: &[u8]) -> Result<(bool, Greeting), String> {
    let (&accepted, rest) = payload.split_first().ok_or("empty handshake answer")?;
    Ok((accepted == 1, decode_greeting(rest)?))
}

fn decode_greeting(data: &[u8]) -> Result<Greeting, String> {
    let node_id = i32::from_be_bytes(
        data.get(..4)
            .ok_or("handshake ends early")?
            .try_into()
            .unwrap(),
    );
    let length = *data.get(4).ok_or("handshake ends early")? as usize;
    let id = data.get(5..5 + length).ok_or("handshake ends early")?;
    if data.len() != 5 + length {
        return Err("bytes after the handshake".into());
    }
    let id = std::str::from_utf8(id).map_err(|_| "cluster id is not UTF-8")?;
    Ok(Greeting {
        node_id,
        cluster_id: (!id.is_empty()).then(|| id.to_string()),
    })
}

/// Reads one frame: (kind, payload). `max_bytes` bounds the length before anything is allocated.
pub async fn read_frame<R: futures_lite::AsyncRead + Unpin>(
    reader: &mut R,
    max_bytes: usize,
) -> io::Result<(u8, Vec<u8>)> {
    read_frame_bounded(reader, |_| max_bytes).await
}

/// Reads one frame whose length is bounded by its kind (`max_bytes(kind)`), checked once the kind is
/// read and before the payload is.
pub async fn read_frame_bounded<R: futures_lite::AsyncRead + Unpin>(
    reader: &mut R,
    max_bytes: impl Fn(u8) -> usize,
) -> io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 4];
    reader.read_exact(&mut header).await?;
    let length = u32::from_be_bytes(header) as usize;
    let too_long = |max: usize| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {length} bytes (at most {max})"),
        )
    };
    // No kind allows more than the largest bound: refused before waiting for the kind byte.
    if length == 0 || length > MAX_SNAPSHOT_FRAME_BYTES.max(max_bytes(0)) {
        return Err(too_long(MAX_SNAPSHOT_FRAME_BYTES));
    }
    let mut kind = [0u8; 1];
    reader.read_exact(&mut kind).await?;
    let kind = kind[0];
    if length > max_bytes(kind) {
        return Err(too_long(max_bytes(kind)));
    }
    let payload_length = length - 1;
    let mut payload = Vec::with_capacity(payload_length.min(READ_CHUNK_BYTES));
    while payload.len() < payload_length {
        let start = payload.len();
        payload.resize(start + (payload_length - start).min(READ_CHUNK_BYTES), 0);
        reader.read_exact(&mut payload[start..]).await?;
    }
    Ok((kind, payload))
}

/// The most bytes a frame of `kind` may have after the handshake: snapshots are larger.
pub fn max_frame_bytes(kind: u8) -> usize {
    if kind == SNAPSHOT {
        MAX_SNAPSHOT_FRAME_BYTES
    } else {
        MAX_FRAME_BYTES
    }
}

pub async fn write_all<W: futures_lite::AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
) -> io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

/// A Raft message as a frame: a snapshot in a frame of its own kind.
pub fn frame_of(message: &Message) -> Vec<u8> {
    let kind = if message.get_msg_type() == MessageType::MsgSnapshot {
        SNAPSHOT
    } else {
        RAFT
    };
    frame(kind, &message.write_to_bytes().expect("encodes"))
}

/// Reads frames from `reader` until it ends: pings are skipped, Raft messages (checked to be a kind
/// nodes send each other, from `from`, to `to`) go to `inbound` (dropped when it is full: the Ready
/// loop is behind, and Raft sends again). With `idle_timeout`, a connection silent that long is an
/// error (a peer gone without a FIN). From a learner (`from_learner`: a broker-only node) only what a
/// learner sends is taken (`learner_sends`), in frames of at most `MAX_FRAME_BYTES` (never a snapshot).
pub async fn read_messages(
    mut reader: impl futures_lite::AsyncRead + Unpin,
    from: u64,
    to: u64,
    idle_timeout: Option<Duration>,
    from_learner: bool,
    mut inbound: mpsc::Sender<Message>,
) -> Result<(), String> {
    let bound = |kind| {
        if from_learner {
            MAX_FRAME_BYTES
        } else {
            max_frame_bytes(kind)
        }
    };
    loop {
        let read = read_frame_bounded(&mut reader, bound);
        let read = match idle_timeout {
            Some(limit) => shard::task::timeout(limit, read).await,
            None => Some(read.await),
        };
        let (kind, payload) = match read {
            None => return Err(format!("nothing for {idle_timeout:?}")),
            Some(Ok(frame)) => frame,
            Some(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Some(Err(error)) => return Err(error.to_string()),
        };
        match kind {
            PING => continue,
            RAFT | SNAPSHOT => {}
            _ => return Err(format!("frame of kind {kind} after the handshake")),
        }
        let message = Message::parse_from_bytes(&payload).map_err(|error| error.to_string())?;
        let carried = carried_between_nodes(message.get_msg_type(), kind)
            && (!from_learner || learner_sends(message.get_msg_type()));
        if !carried {
            return Err(format!(
                "a {:?} from node {}: not a message nodes send each other here",
                message.get_msg_type(),
                node_of(from)
            ));
        }
        if message.from != from || message.to != to {
            return Err(format!(
                "a message from node {} to node {} on node {}'s connection",
                node_of(message.from),
                node_of(message.to),
                node_of(from)
            ));
        }
        let _ = inbound.try_send(message);
    }
}

/// The Raft messages a learner sends: answers to the leader's appends and heartbeats, and proposals
/// forwarded to the leader.
pub fn learner_sends(kind: MessageType) -> bool {
    matches!(
        kind,
        MessageType::MsgAppendResponse
            | MessageType::MsgHeartbeatResponse
            | MessageType::MsgPropose
    )
}

/// The Raft messages nodes send each other over the wire here (a snapshot only in a frame of its own
/// kind, the others never). Local message types (ticks, reports) never travel; nor do read indexes
/// and snapshot requests, which nothing here uses.
fn carried_between_nodes(kind: MessageType, frame_kind: u8) -> bool {
    use MessageType::*;
    if (kind == MsgSnapshot) != (frame_kind == SNAPSHOT) {
        return false;
    }
    matches!(
        kind,
        MsgSnapshot
            | MsgAppend
            | MsgAppendResponse
            | MsgRequestVote
            | MsgRequestVoteResponse
            | MsgRequestPreVote
            | MsgRequestPreVoteResponse
            | MsgHeartbeat
            | MsgHeartbeatResponse
            | MsgTimeoutNow
            | MsgPropose
            | MsgTransferLeader
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_round_trip_and_bad_ones_are_refused() {
        let greeting = Greeting {
            node_id: 3,
            cluster_id: Some("AbC-1_x".into()),
        };
        let bytes = encode_hello(&greeting);
        assert_eq!(bytes[4], HELLO);
        assert_eq!(decode_hello(&bytes[5..]), Ok(greeting.clone()));
        let unformatted = Greeting {
            node_id: 0,
            cluster_id: None,
        };
        let bytes = encode_hello_ack(false, &unformatted);
        assert_eq!(decode_hello_ack(&bytes[5..]), Ok((false, unformatted)));
        assert!(decode_hello(b"HTTP/1.1 200").is_err());
        let mut other_version = encode_hello(&greeting)[5..].to_vec();
        other_version[5] = 9;
        assert!(decode_hello(&other_version)
            .unwrap_err()
            .contains("version"));
        let hello = encode_hello(&greeting);
        for cut in 5..hello.len() - 1 {
            assert!(decode_hello(&hello[5..cut]).is_err(), "cut at {cut}");
        }
    }

    proptest::proptest! {
        /// Whatever a peer sends as a handshake or a Raft message, decoding it answers or refuses.
        #[test]
        fn arbitrary_payloads_never_panic(payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96)) {
            let _ = decode_hello(&payload);
            let _ = decode_hello_ack(&payload);
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&payload);
            let _ = decode_hello(&with_magic);
            let _ = <raft::prelude::Message as protobuf::Message>::parse_from_bytes(&payload);
        }
    }

    #[test]
    fn frames_over_the_bound_are_refused_before_allocating() {
        let mut huge: &[u8] = &[0xff, 0xff, 0xff, 0xff, RAFT];
        let error = futures_lite::future::block_on(read_frame(&mut huge, MAX_FRAME_BYTES))
            .expect_err("refused");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        let mut framed: &[u8] = &frame(RAFT, b"xyz");
        let (kind, payload) =
            futures_lite::future::block_on(read_frame(&mut framed, MAX_FRAME_BYTES)).unwrap();
        assert_eq!((kind, &payload[..]), (RAFT, &b"xyz"[..]));
    }

    #[test]
    fn a_learner_may_send_only_what_learners_send() {
        let message = |kind: MessageType| {
            let mut message = Message::default();
            message.set_msg_type(kind);
            message.from = 5;
            message.to = 1;
            message
        };
        let read = |bytes: Vec<u8>, from_learner: bool| {
            let (inbound, mut queued) = mpsc::channel(8);
            let result = futures_lite::future::block_on(read_messages(
                &bytes[..],
                5,
                1,
                None,
                from_learner,
                inbound,
            ));
            let mut count = 0;
            while queued.try_recv().is_ok() {
                count += 1;
            }
            (result, count)
        };
        let answers = [
            frame_of(&message(MessageType::MsgAppendResponse)),
            frame_of(&message(MessageType::MsgHeartbeatResponse)),
            frame_of(&message(MessageType::MsgPropose)),
        ]
        .concat();
        assert_eq!(read(answers, true), (Ok(()), 3));
        for kind in [
            MessageType::MsgAppend,
            MessageType::MsgRequestVote,
            MessageType::MsgHeartbeat,
            MessageType::MsgSnapshot,
        ] {
            let (result, count) = read(frame_of(&message(kind)), true);
            assert!(result.is_err() && count == 0, "{kind:?} from a learner");
            assert_eq!(
                read(frame_of(&message(kind)), false),
                (Ok(()), 1),
                "{kind:?} from a voter"
            );
        }
        // A large snapshot frame is refused from a learner before its payload is read.
        let mut large = message(MessageType::MsgSnapshot);
        large
            .mut_snapshot()
            .set_data(vec![0u8; MAX_FRAME_BYTES].into());
        let (result, count) = read(frame_of(&large), true);
        assert!(
            result.unwrap_err().contains("at most"),
            "bounded by MAX_FRAME_BYTES"
        );
        assert_eq!(count, 0);
    }

    #[test]
    fn only_snapshot_frames_may_be_large() {
        let length = (MAX_FRAME_BYTES as u32 + 2).to_be_bytes();
        let mut large_raft: &[u8] = &[length[0], length[1], length[2], length[3], RAFT];
        let error =
            futures_lite::future::block_on(read_frame_bounded(&mut large_raft, max_frame_bytes))
                .expect_err("refused");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        let payload = vec![7u8; MAX_FRAME_BYTES + 1];
        let snapshot = frame(SNAPSHOT, &payload);
        let (kind, read) =
            futures_lite::future::block_on(read_frame_bounded(&mut &snapshot[..], max_frame_bytes))
                .unwrap();
        assert_eq!((kind, read.len()), (SNAPSHOT, payload.len()));
        // A length promising more than arrives ends in an error, having allocated only what came.
        let mut short: &[u8] = &snapshot[..snapshot.len() / 2];
        assert!(
            futures_lite::future::block_on(read_frame_bounded(&mut short, max_frame_bytes))
                .is_err()
        );
    }
}
