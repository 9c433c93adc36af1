//! gRPC message framing for streams served or read below tonic's codec: a 5-byte header (compression
//! flag, big-endian length) before each protobuf message.
//!
//! tonic's streaming codec keeps a buffer as large as the largest message a stream ever carried, for the
//! stream's whole life; with thousands of delta xDS streams and multi-megabyte initial responses that is
//! gigabytes. [`Frames`] gathers incoming bytes and releases its allocation after a large message;
//! [`encode`] frames one message into a buffer of exactly its size.

use prost::Message;
use prost::bytes::{Buf, BufMut, Bytes, BytesMut};

/// The frame header: a compression flag and a 4-byte big-endian length.
pub const HEADER: usize = 5;

/// After a message larger than this, the buffer's allocation is released.
const KEEP_BUFFER: usize = 64 * 1024;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the message is compressed, which was not negotiated")]
    Compressed,
    #[error("a message of {len} bytes is over the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("the message does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// One message framed: no compression, its length, its bytes.
pub fn encode<M: Message>(message: &M) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(HEADER + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    // The buffer has room for the whole message, so encoding cannot fail.
    let _ = message.encode(&mut buf);
    buf.freeze()
}

/// Bytes received so far on one stream, cut into messages.
#[derive(Debug)]
pub struct Frames {
    buf: BytesMut,
    max: usize,
}

impl Frames {
    /// Messages longer than `max` bytes are refused.
    pub fn new(max: usize) -> Frames {
        Frames {
            buf: BytesMut::new(),
            max,
        }
    }

    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// No partial message is waiting.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes the buffer holds room for (for tests of its release).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The next whole message, if the buffer holds one.
    pub fn next_message<M: Message + Default>(&mut self) -> Result<Option<M>, FrameError> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        if self.buf[0] != 0 {
            return Err(FrameError::Compressed);
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        if self.buf.len() < HEADER + len {
            // Room for the rest at once, rather than growing step by step.
            self.buf.reserve(HEADER + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(HEADER);
        let body = self.buf.split_to(len);
        let message = M::decode(&body[..])?;
        drop(body);
        if len > KEEP_BUFFER {
            // What is left still points into the large allocation: copy it out so the allocation goes.
            self.buf = BytesMut::from(&self.buf[..]);
        }
        Ok(Some(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Blob {
        #[prost(bytes = "vec", tag = "1")]
        data: Vec<u8>,
    }

    #[test]
    fn messages_split_anyhow_come_out_whole_and_large_buffers_are_released() {
        let big = Blob {
            data: vec![7; 200_000],
        };
        let small = Blob { data: vec![1, 2] };
        let mut wire = Vec::new();
        wire.extend_from_slice(&encode(&big));
        wire.extend_from_slice(&encode(&small));
        let mut frames = Frames::new(1 << 20);
        let mut got = Vec::new();
        for chunk in wire.chunks(777) {
            frames.extend(chunk);
            while let Some(m) = frames.next_message::<Blob>().unwrap() {
                got.push(m);
                if got.len() == 1 {
                    assert!(
                        frames.capacity() <= KEEP_BUFFER,
                        "released after the large one"
                    );
                }
            }
        }
        assert_eq!(got, [big, small]);
        assert!(frames.is_empty());
    }

    #[test]
    fn compressed_and_oversized_frames_are_refused() {
        let mut frames = Frames::new(10);
        frames.extend(&[1, 0, 0, 0, 0]);
        assert!(matches!(
            frames.next_message::<Blob>(),
            Err(FrameError::Compressed)
        ));
        let mut frames = Frames::new(10);
        frames.extend(&[0, 0, 0, 0, 11]);
        assert!(matches!(
            frames.next_message::<Blob>(),
            Err(FrameError::TooLarge { len: 11, max: 10 })
        ));
    }
}
