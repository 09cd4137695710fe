//! The end of a response body that a full socket refused, when that end is part of one
//! `bytes` object the app returned: the connection keeps a reference to the object and
//! sends from it as the socket drains (src/server/conn.rs). Nothing is copied, and the
//! GIL is not needed to send: a `bytes` object's contents never change or move.
//!
//! The reference counts against the parked-bytes budget like a copy would: the object
//! stays alive (its memory held) until the tail went out or its connection closed.

use std::io;
use std::os::fd::RawFd;

use pyo3::pybacked::PyBackedBytes;

use super::output::Parked;
use crate::net::socket;

/// `bytes[pos..end]`, still to send.
pub struct BytesTail {
    bytes: PyBackedBytes,
    pos: usize,
    end: usize,
    _parked: Parked,
}

impl BytesTail {
    /// The tail `bytes[pos..end]` (`pos < end <= bytes.len()`), with its budget share.
    pub fn new(bytes: PyBackedBytes, pos: usize, end: usize, parked: Parked) -> BytesTail {
        debug_assert!(pos < end && end <= bytes.len(), "an empty or outside tail");
        BytesTail {
            bytes,
            pos,
            end,
            _parked: parked,
        }
    }

    /// Bytes still to send.
    pub fn left(&self) -> u64 {
        (self.end - self.pos) as u64
    }

    /// Sends what the socket `fd` takes without waiting: `Ok(true)` once the whole tail is
    /// out, `Ok(false)` when the socket is full (the rest goes at its next writable event).
    pub fn resume(&mut self, fd: RawFd) -> io::Result<bool> {
        while self.pos < self.end {
            match socket::writev(fd, &[&self.bytes[self.pos..self.end]]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

impl std::fmt::Debug for BytesTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BytesTail")
            .field("pos", &self.pos)
            .field("end", &self.end)
            .finish()
    }
}
