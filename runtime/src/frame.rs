//! The wire format, and the only place that knows it.
//!
//! A frame is an 8-byte header — magic `LM`, protocol version (u16 LE),
//! payload length (u32 LE) — then a bincode payload (bincode 2, standard
//! configuration, serde). The length is checked against the node's limit
//! before any of the payload is read, and decoding is bounded by the frame,
//! so a malformed, truncated or oversized frame is an error for its stream
//! and never a panic or an unbounded allocation: bincode allocates what a
//! length inside the payload claims before it reads those bytes, so each
//! payload is decoded under a limit of [`CLAIM_FACTOR`] times its own
//! length (at least [`MIN_CLAIM`]), not under the largest frame's.
//!
//! bincode sits behind [`encode`] and [`decode`] alone, so that it can be
//! swapped (3.0 is an empty release and RUSTSEC-2025-0141 marks the crate
//! unmaintained).

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Protocol version; a peer speaking another is refused frame by frame.
pub const PROTOCOL_VERSION: u16 = 3;
/// Default largest payload: far above a checkpoint descriptor, far below memory.
pub const DEFAULT_MAX_FRAME: u32 = 16 << 20;
/// No limit may be set above this.
pub const MAX_FRAME_CAP: u32 = 256 << 20;

const MAGIC: [u8; 2] = *b"LM";
const HEADER: usize = 8;
/// What a payload's buffer starts at; it grows as bytes arrive.
const READ_CHUNK: usize = 64 << 10;

/// Why a frame was refused.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The header is not a Leman frame header.
    #[error("not a leman frame (bad magic {0:02x?})")]
    BadMagic([u8; 2]),
    /// The peer speaks another protocol version.
    #[error("peer speaks protocol version {0}, this node speaks {PROTOCOL_VERSION}; run the same leman version on every node")]
    Version(u16),
    /// The payload is longer than the limit.
    #[error("frame of {len} bytes is over the limit of {limit} bytes")]
    Oversized { len: u32, limit: u32 },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame: {0}")]
    Truncated(std::io::Error),
    /// The payload does not decode as the expected message.
    #[error("malformed frame payload: {0}")]
    Malformed(String),
    /// A message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// Writing failed.
    #[error("write failed: {0}")]
    Write(std::io::Error),
}

/// What decoding a payload may claim (allocate), per byte of payload: a
/// decoded value may well take more memory than its encoding (a `None` is
/// one byte on the wire, sixteen in an `Option<u64>`), never this much more.
pub const CLAIM_FACTOR: usize = 32;
/// What decoding any payload may claim, however short.
pub const MIN_CLAIM: usize = 64 << 10;
/// What serde may reserve for a sequence before its elements arrive (its
/// cautious size hint), on top of the claims: a short payload announcing a
/// long list costs this much at most, and only while it is decoded.
pub const SEQUENCE_RESERVE: usize = 1 << 20;

/// Encodes a message as a payload.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let config = bincode::config::standard().with_limit::<{ MAX_FRAME_CAP as usize }>();
    bincode::serde::encode_to_vec(message, config).map_err(|e| FrameError::Encode(e.to_string()))
}

/// Decodes a whole payload as one message; trailing bytes are an error.
/// It allocates at most [`CLAIM_FACTOR`] times the payload's length (at
/// least [`MIN_CLAIM`]) plus [`SEQUENCE_RESERVE`], whatever lengths the
/// payload claims inside it.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let bound = payload.len().saturating_mul(CLAIM_FACTOR).max(MIN_CLAIM);
    // bincode takes its limit as a constant: the smallest class that fits.
    macro_rules! decode_under {
        ($($limit:expr),*) => {
            $(if bound <= $limit { return decode_limited::<T, { $limit }>(payload); })*
        };
    }
    decode_under!(1 << 16, 1 << 18, 1 << 20, 1 << 22, 1 << 24, 1 << 26, 1 << 28, 1 << 30, 1 << 32, 1 << 33);
    Err(FrameError::Malformed(format!("a payload of {} bytes is over any limit", payload.len())))
}

fn decode_limited<T: DeserializeOwned, const LIMIT: usize>(payload: &[u8]) -> Result<T, FrameError> {
    let config = bincode::config::standard().with_limit::<LIMIT>();
    let (message, used) = bincode::serde::decode_from_slice(payload, config).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if used != payload.len() {
        return Err(FrameError::Malformed(format!("{} trailing bytes", payload.len() - used)));
    }
    Ok(message)
}

/// Encodes `message` as one whole frame, header included.
pub fn encode_frame<T: Serialize>(message: &T, limit: u32) -> Result<Vec<u8>, FrameError> {
    let payload = encode(message)?;
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    if len > limit {
        return Err(FrameError::Oversized { len, limit });
    }
    let mut frame = Vec::with_capacity(HEADER + payload.len());
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Writes `message` as one frame. It is encoded before the returned future
/// is first polled, so the future holds bytes, not the message.
pub fn write_frame<'w, W: AsyncWrite + Unpin, T: Serialize>(
    writer: &'w mut W,
    message: &T,
    limit: u32,
) -> impl Future<Output = Result<(), FrameError>> + 'w {
    let frame = encode_frame(message, limit);
    async move { writer.write_all(&frame?).await.map_err(FrameError::Write) }
}

/// Reads one frame and decodes it.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(reader: &mut R, limit: u32) -> Result<T, FrameError> {
    let len = read_header(reader, limit).await?;
    read_payload(reader, len).await
}

/// Reads a frame's header; returns the length of its payload (at most `limit`).
pub async fn read_header<R: AsyncRead + Unpin>(reader: &mut R, limit: u32) -> Result<u32, FrameError> {
    let mut header = [0u8; HEADER];
    reader.read_exact(&mut header).await.map_err(FrameError::Truncated)?;
    let magic = [header[0], header[1]];
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    let version = u16::from_le_bytes([header[2], header[3]]);
    if version != PROTOCOL_VERSION {
        return Err(FrameError::Version(version));
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > limit {
        return Err(FrameError::Oversized { len, limit });
    }
    Ok(len)
}

/// Reads a payload of `len` bytes and decodes it. Memory grows with the
/// bytes that arrive, not with the length announced: a peer that announces
/// a large frame and sends little costs little.
pub async fn read_payload<R: AsyncRead + Unpin, T: DeserializeOwned>(reader: &mut R, len: u32) -> Result<T, FrameError> {
    let mut payload = Vec::with_capacity((len as usize).min(READ_CHUNK));
    reader.take(u64::from(len)).read_to_end(&mut payload).await.map_err(FrameError::Truncated)?;
    if payload.len() != len as usize {
        let missing = len as usize - payload.len();
        return Err(FrameError::Truncated(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{missing} of {len} bytes missing"),
        )));
    }
    decode(&payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Sample {
        Ping(u64),
        Text { name: String, bytes: Vec<u8> },
    }

    async fn round_trip(message: &Sample, limit: u32) -> Result<Sample, FrameError> {
        let mut buffer = Vec::new();
        write_frame(&mut buffer, message, limit).await?;
        read_frame(&mut buffer.as_slice(), limit).await
    }

    #[tokio::test]
    async fn frames_round_trip() {
        for message in [Sample::Ping(7), Sample::Text { name: "é".into(), bytes: vec![1; 1000] }] {
            assert_eq!(round_trip(&message, DEFAULT_MAX_FRAME).await.ok(), Some(message));
        }
    }

    #[tokio::test]
    async fn bad_frames_are_errors_not_panics() {
        let limit = 64;
        let big = Sample::Text { name: String::new(), bytes: vec![0; 100] };
        assert!(matches!(round_trip(&big, limit).await, Err(FrameError::Oversized { .. })));

        let mut frame = Vec::new();
        write_frame(&mut frame, &Sample::Ping(1), limit).await.ok();
        let truncated = &frame[..frame.len() - 1];
        assert!(matches!(read_frame::<_, Sample>(&mut &truncated[..], limit).await, Err(FrameError::Truncated(_))));

        let mut wrong_magic = frame.clone();
        wrong_magic[0] = b'X';
        assert!(matches!(read_frame::<_, Sample>(&mut wrong_magic.as_slice(), limit).await, Err(FrameError::BadMagic(_))));

        let mut future = frame.clone();
        future[2] = 9;
        assert!(matches!(read_frame::<_, Sample>(&mut future.as_slice(), limit).await, Err(FrameError::Version(9))));

        // A header announcing 4 GiB is refused before anything is allocated.
        let mut huge = frame[..4].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(read_frame::<_, Sample>(&mut huge.as_slice(), limit).await, Err(FrameError::Oversized { .. })));

        // A payload that is not a Sample: a variant index out of range.
        let mut garbage = frame[..4].to_vec();
        garbage.extend_from_slice(&3u32.to_le_bytes());
        garbage.extend_from_slice(&[0xff, 0xff, 0xff]);
        assert!(matches!(read_frame::<_, Sample>(&mut garbage.as_slice(), limit).await, Err(FrameError::Malformed(_))));
    }
}
