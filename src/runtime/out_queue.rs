//! `OutQueue`: the bytes a connection has been given to send and the kernel has not taken yet.
//!
//! Output is a queue of `Chunk`s rather than one flat buffer, for two reasons. A broadcast frame is
//! encoded once and shared by every recipient's queue (`Chunk::Shared`, a reference count, no copy
//! of the payload per client), and a static reply (`Chunk::Static`) costs nothing to queue. Small
//! replies are copied into the tail `Owned` chunk so a burst of them becomes one buffer, and the
//! whole queue goes to the kernel in one `writev` (see `ConnIo::flush_outbuf` in `conn_io.rs`).
//!
//! A drained queue keeps its storage (the deque and one small coalescing buffer) so that the next
//! reply costs no `malloc`. It is the *connection* that owns no queue while idle: the loop takes
//! the queue away when it drains and keeps a few in a pool for the next busy connection
//! (`Core::release_buffers` in `core.rs`).

use std::collections::VecDeque;
use std::io::IoSlice;
use std::rc::Rc;

/// Copying a small reply into the tail chunk is cheaper than queueing a new chunk for it up to
/// this size; 4 KiB is one page and well above a line or a small HTTP response.
const COALESCE_LIMIT: usize = 4096;
/// A new coalescing buffer starts at 256 bytes (a few lines or a small response) and grows by
/// doubling up to `COALESCE_LIMIT`.
const FIRST_BUFFER: usize = 256;
/// `writev` takes at most this many pieces per call (Linux' IOV_MAX is 1024; 64 keeps the
/// `IoSlice` array on the stack at 1 KiB and is far more than a queue usually holds).
pub const MAX_IOVECS: usize = 64;
/// A drained buffer up to this capacity (64 KiB) is kept for reuse; a larger one is freed.
const SPARE_LIMIT: usize = 64 * 1024;

/// One piece of pending output.
#[derive(Debug, Clone)]
pub enum Chunk {
    /// Bytes owned by this queue alone.
    Owned(Vec<u8>),
    /// Bytes shared with other queues (a broadcast frame encoded once).
    Shared(Rc<[u8]>),
    /// Bytes that live for the whole program (a greeting, a canned response).
    Static(&'static [u8]),
}

impl Chunk {
    /// The bytes of this chunk.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(r) => r,
            Chunk::Static(s) => s,
        }
    }
}

impl From<Vec<u8>> for Chunk {
    fn from(v: Vec<u8>) -> Chunk {
        Chunk::Owned(v)
    }
}

impl From<Rc<[u8]>> for Chunk {
    fn from(r: Rc<[u8]>) -> Chunk {
        Chunk::Shared(r)
    }
}

impl From<&'static [u8]> for Chunk {
    fn from(s: &'static [u8]) -> Chunk {
        Chunk::Static(s)
    }
}

impl From<&'static str> for Chunk {
    fn from(s: &'static str) -> Chunk {
        Chunk::Static(s.as_bytes())
    }
}

/// A FIFO of chunks with the offset already written out of the first one.
#[derive(Debug, Default)]
pub struct OutQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of `chunks[0]` already written.
    head_offset: usize,
    /// Bytes queued and not yet written, across all chunks.
    pending: usize,
    /// An emptied coalescing buffer, reused by the next `push_copy` (no malloc per reply).
    spare: Vec<u8>,
}

impl OutQueue {
    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Queues a chunk. Empty chunks are dropped.
    pub fn push(&mut self, chunk: Chunk) {
        let len = chunk.as_bytes().len();
        if len == 0 {
            return;
        }
        if len <= COALESCE_LIMIT {
            if let Some(Chunk::Owned(tail)) = self.chunks.back_mut() {
                // Only append into spare capacity (or a still-small tail): never grow a large
                // buffer that may be half written.
                if tail.len() + len <= tail.capacity() || tail.len() + len <= COALESCE_LIMIT {
                    tail.extend_from_slice(chunk.as_bytes());
                    self.pending += len;
                    return;
                }
            }
        }
        self.pending += len;
        self.chunks.push_back(chunk);
    }

    /// Queues a copy of `bytes`, coalescing with the tail chunk where it can.
    pub fn push_copy(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(Chunk::Owned(tail)) = self.chunks.back_mut() {
            if tail.len() + bytes.len() <= tail.capacity().max(COALESCE_LIMIT) {
                tail.extend_from_slice(bytes);
                self.pending += bytes.len();
                return;
            }
        }
        // Room for a few more small replies, but not a page per connection: thousands of
        // connections may be busy at once, and what they free stays in the allocator.
        let want = if bytes.len() <= COALESCE_LIMIT {
            bytes.len().next_power_of_two().max(FIRST_BUFFER)
        } else {
            bytes.len()
        };
        let mut v = std::mem::take(&mut self.spare);
        if v.capacity() < want {
            v = Vec::with_capacity(want);
        }
        v.extend_from_slice(bytes);
        self.pending += bytes.len();
        self.chunks.push_back(Chunk::Owned(v));
    }

    /// The unwritten bytes when they are one chunk (most flushes: a reply, a broadcast frame),
    /// so the flush needs no `IoSlice` array.
    pub fn only_slice(&self) -> Option<&[u8]> {
        match self.chunks.len() {
            1 => {
                let bytes = self.chunks[0].as_bytes();
                Some(&bytes[self.head_offset.min(bytes.len())..])
            }
            _ => None,
        }
    }

    /// Fills `iov` with the unwritten bytes, oldest first; returns how many slices were set.
    pub fn io_slices<'a>(&'a self, iov: &mut [IoSlice<'a>; MAX_IOVECS]) -> usize {
        let mut n = 0;
        for (i, chunk) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
            let bytes = chunk.as_bytes();
            let bytes = if i == 0 {
                &bytes[self.head_offset.min(bytes.len())..]
            } else {
                bytes
            };
            iov[n] = IoSlice::new(bytes);
            n += 1;
        }
        n
    }

    /// Marks `written` bytes as sent, dropping the chunks they complete (a small owned one is
    /// kept as the spare buffer for the next reply).
    pub fn advance(&mut self, mut written: usize) {
        debug_assert!(written <= self.pending);
        self.pending -= written.min(self.pending);
        while written > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.as_bytes().len() - self.head_offset;
            if written >= left {
                written -= left;
                self.head_offset = 0;
                if let Some(Chunk::Owned(mut v)) = self.chunks.pop_front() {
                    if v.capacity() <= SPARE_LIMIT && v.capacity() > self.spare.capacity() {
                        v.clear();
                        self.spare = v;
                    }
                }
            } else {
                self.head_offset += written;
                written = 0;
            }
        }
    }

    /// Drops every chunk the socket has not started on, keeping the one it is part-way through
    /// (dropping part of it would corrupt the stream), and returns the bytes dropped. Protocols
    /// queue whole messages as chunks, so what is left ends at a message boundary: a WebSocket
    /// shutdown cuts a backlog this way and queues its close frame next.
    pub fn discard_unstarted(&mut self) -> usize {
        let keep = usize::from(self.head_offset > 0).min(self.chunks.len());
        let dropped: usize = self.chunks.drain(keep..).map(|c| c.as_bytes().len()).sum();
        self.pending -= dropped;
        dropped
    }

    /// Drops everything queued (the peer is gone).
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.head_offset = 0;
        self.pending = 0;
    }

    /// Frees all storage of an empty queue (one that stays with an idle connection, a TLS one,
    /// rather than going back to the pool).
    pub fn free_storage(&mut self) {
        debug_assert!(self.is_empty());
        self.chunks = VecDeque::new();
        self.spare = Vec::new();
    }

    /// Frees the byte buffer, and a chunk deque grown past 8, for a queue kept bare in the
    /// pool (`SPARE_BARE` in `core.rs`).
    pub fn strip(&mut self) {
        debug_assert!(self.is_empty());
        if self.chunks.capacity() > 8 {
            self.chunks = VecDeque::new();
        }
        self.spare = Vec::new();
    }

    /// Frees storage beyond what is worth keeping in the loop's pool of spare queues.
    pub fn shrink(&mut self) {
        debug_assert!(self.is_empty());
        if self.chunks.capacity() > MAX_IOVECS {
            self.chunks = VecDeque::new();
        }
        if self.spare.capacity() > SPARE_LIMIT {
            self.spare = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gather(q: &OutQueue) -> Vec<u8> {
        let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
        let n = q.io_slices(&mut iov);
        iov[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn only_slice_is_the_unwritten_rest_of_a_lone_chunk() {
        let mut q = OutQueue::default();
        assert_eq!(q.only_slice(), None);
        q.push(Chunk::Static(b"greeting"));
        assert_eq!(q.only_slice(), Some(&b"greeting"[..]));
        q.advance(3);
        assert_eq!(q.only_slice(), Some(&b"eting"[..]));
        q.push(Chunk::Static(b"more"));
        assert_eq!(q.only_slice(), None, "two chunks go out as a writev");
        assert_eq!(gather(&q), b"etingmore");
    }

    #[test]
    fn small_pushes_coalesce_into_one_chunk() {
        let mut q = OutQueue::default();
        q.push_copy(b"hello ");
        q.push(Chunk::Owned(b"world".to_vec()));
        q.push_copy(b"\n");
        assert_eq!(q.chunks.len(), 1);
        assert_eq!(gather(&q), b"hello world\n");
        assert_eq!(q.pending(), 12);
    }

    #[test]
    fn shared_and_static_chunks_are_not_copied() {
        let frame: Rc<[u8]> = Rc::from(&b"frame"[..]);
        let mut q = OutQueue::default();
        q.push(Chunk::Static(b"a"));
        q.push(Chunk::Shared(frame.clone()));
        q.push(Chunk::Shared(frame.clone()));
        assert_eq!(Rc::strong_count(&frame), 3);
        assert_eq!(gather(&q), b"aframeframe");
    }

    #[test]
    fn discarding_keeps_only_the_chunk_under_way() {
        let mut q = OutQueue::default();
        q.push(Chunk::Static(b"first"));
        q.push(Chunk::Static(b"second"));
        q.push(Chunk::Static(b"third"));
        assert_eq!(
            q.discard_unstarted(),
            16,
            "nothing written yet: all of it goes"
        );
        assert!(q.is_empty());
        q.push(Chunk::Static(b"first"));
        q.push(Chunk::Static(b"second"));
        q.advance(2);
        assert_eq!(q.discard_unstarted(), 6);
        assert_eq!(gather(&q), b"rst", "the chunk under way is finished");
        q.push_copy(b"close");
        assert_eq!(gather(&q), b"rstclose");
    }

    #[test]
    fn partial_advance_keeps_the_rest() {
        let mut q = OutQueue::default();
        q.push(Chunk::Static(b"abc"));
        q.push(Chunk::Static(b"defg"));
        q.advance(2);
        assert_eq!(gather(&q), b"cdefg");
        q.advance(2);
        assert_eq!(gather(&q), b"efg");
        q.advance(3);
        assert!(q.is_empty());
        assert!(q.chunks.is_empty());
    }
}
