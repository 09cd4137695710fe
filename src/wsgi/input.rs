//! `wsgi.input`: the request body, streamed from the socket on demand.
//!
//! Bytes already buffered come first; after that each read blocks (with the GIL
//! released) until the client sends more, so a 1 GiB upload never sits in memory.
//! Reads past the body return `b""` (`wsgi.input_terminated` is set).

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyIOError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::http::chunked::ChunkedDecoder;
use crate::http::error::HttpError;
use crate::net::socket::{self, Interest};

const READ_CHUNK: usize = 64 * 1024;
/// A read that needs at least this much from the socket reads it straight into the
/// bytes object it returns (see [`BodyReader::direct_len`]).
const DIRECT_MIN: usize = 16 * 1024;
/// How much unread body the server reads and discards after the app returns, to keep
/// the connection for the next request. More than this, and the connection closes.
pub const DRAIN_MAX: u64 = 64 * 1024;

/// What the response writer must know about the request body while the app runs.
///
/// The reader publishes here after every step, so the head can say `Connection:
/// close` whenever the connection will not survive the exchange, and an app that
/// fails on a refused body answers with the refusal's status instead of a 500.
#[derive(Debug, Default)]
pub struct BodyState {
    closes: AtomicBool,
    refused: OnceLock<HttpError>,
}

impl BodyState {
    /// The connection closes after this exchange if the app stops reading now.
    pub fn closes(&self) -> bool {
        self.closes.load(Ordering::Relaxed)
    }

    /// Why the body was refused (bad framing, over the limit, too slow), if it was.
    pub fn refused(&self) -> Option<HttpError> {
        self.refused.get().copied()
    }
}

enum Body {
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
    Done,
}

/// The body state of one request, shared between Rust and the `InputStream`.
pub struct BodyReader {
    fd: RawFd,
    /// Bytes read from the socket; `buf[pos..]` is not consumed yet. It may hold the
    /// next pipelined request after the body.
    buf: Vec<u8>,
    pos: usize,
    body: Body,
    /// Decoded bytes waiting to be returned (used by readline and chunked reads).
    pending: Vec<u8>,
    send_continue: bool,
    timeout: Duration,
    /// Set when the body could not be read to its end (bad framing, timeout, EOF).
    pub failed: Option<String>,
    state: Arc<BodyState>,
}

impl BodyReader {
    /// A reader over `buf[pos..]` followed by the socket.
    pub fn new(
        fd: RawFd,
        buf: Vec<u8>,
        pos: usize,
        framing: crate::http::head::Framing,
        limits: &crate::http::head::Limits,
        expect_continue: bool,
        timeout: Duration,
    ) -> BodyReader {
        use crate::http::head::Framing;
        let body = match framing {
            Framing::Empty => Body::Done,
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked => Body::Chunked(Box::new(ChunkedDecoder::new(
                limits.body,
                limits.field_size * limits.fields.max(1),
                limits.field_size,
            ))),
        };
        let r = BodyReader {
            fd,
            buf,
            pos,
            send_continue: expect_continue && !matches!(body, Body::Done),
            body,
            pending: Vec::new(),
            timeout,
            failed: None,
            state: Arc::default(),
        };
        r.publish();
        r
    }

    /// The state the response writer watches.
    pub fn state(&self) -> Arc<BodyState> {
        Arc::clone(&self.state)
    }

    /// Whether the rest of the body can be drained after the app returns, so the
    /// connection carries another request: not after a failure, not when the client
    /// still waits for `100 Continue` (it may never send the body), and only for a
    /// small remainder (an unknown chunked remainder is tried up to [`DRAIN_MAX`]).
    pub fn drainable(&self) -> bool {
        self.failed.is_none()
            && !self.send_continue
            && self.remaining_hint().is_none_or(|n| n <= DRAIN_MAX)
    }

    fn publish(&self) {
        let closes = !self.is_done() && !self.drainable() || self.failed.is_some();
        self.state.closes.store(closes, Ordering::Relaxed);
    }

    /// Whether the whole body has been consumed from the connection.
    pub fn is_done(&self) -> bool {
        matches!(self.body, Body::Done)
    }

    /// Body bytes still expected, when known.
    pub fn remaining_hint(&self) -> Option<u64> {
        match &self.body {
            Body::Length(n) => Some(*n),
            Body::Done => Some(0),
            Body::Chunked(_) => None,
        }
    }

    /// Gives back the connection's buffer (what follows the body) once the exchange ends.
    pub fn into_buffer(mut self) -> (Vec<u8>, usize) {
        let buf = std::mem::take(&mut self.buf);
        (buf, self.pos)
    }

    /// Ends the body in failure; `refusal` is the status to answer with, when the
    /// client is still there to read one.
    fn fail(&mut self, msg: String, refusal: Option<HttpError>) -> io::Error {
        self.failed = Some(msg.clone());
        self.body = Body::Done;
        if let Some(e) = refusal {
            let _ = self.state.refused.set(e);
        }
        self.publish();
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }

    /// Sends `100 Continue` before the first read from the socket, when the client asked.
    fn continue_once(&mut self) -> io::Result<()> {
        if self.send_continue {
            self.send_continue = false;
            let fd = self.fd;
            let mut wait = |_: RawFd, d: Instant| socket::wait(fd, Interest::Write, Some(d));
            socket::write_all_vectored(
                fd,
                &[b"HTTP/1.1 100 Continue\r\n\r\n"],
                self.timeout,
                &mut wait,
            )?;
        }
        Ok(())
    }

    /// Reads more bytes from the socket into `buf`, waiting via `block` when none are
    /// ready. Returns false at EOF.
    fn fill(
        &mut self,
        block: &mut dyn FnMut(RawFd, Instant) -> io::Result<()>,
    ) -> io::Result<bool> {
        if self.fd < 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "request is over",
            ));
        }
        self.continue_once()?;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let deadline = Instant::now() + self.timeout;
        self.buf.reserve(READ_CHUNK);
        loop {
            match socket::read_spare(self.fd, &mut self.buf) {
                Ok(n) => return Ok(n > 0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => block(self.fd, deadline)?,
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves up to `want` decoded body bytes into `pending`. Returns false at the end
    /// of the body.
    fn decode_more(
        &mut self,
        want: usize,
        block: &mut dyn FnMut(RawFd, Instant) -> io::Result<()>,
    ) -> io::Result<bool> {
        loop {
            match &mut self.body {
                Body::Done => return Ok(false),
                Body::Length(left) => {
                    if self.pos < self.buf.len() {
                        let n = (*left)
                            .min((self.buf.len() - self.pos) as u64)
                            .min(want as u64) as usize;
                        self.pending
                            .extend_from_slice(&self.buf[self.pos..self.pos + n]);
                        self.pos += n;
                        *left -= n as u64;
                        if *left == 0 {
                            self.body = Body::Done;
                        }
                        return Ok(true);
                    }
                }
                Body::Chunked(dec) => {
                    if self.pos < self.buf.len() {
                        let input = &self.buf[self.pos..];
                        let input = &input[..input.len().min(want.max(1) + 64)];
                        match dec.step(input) {
                            Ok((used, data)) => {
                                if let Some(r) = data {
                                    self.pending.extend_from_slice(&input[r]);
                                }
                                self.pos += used;
                                if dec.is_done() {
                                    self.body = Body::Done;
                                }
                                if used > 0 {
                                    return Ok(true);
                                }
                            }
                            Err(e) => {
                                return Err(self.fail(format!("bad chunked body: {e}"), Some(e)))
                            }
                        }
                    }
                }
            }
            self.fill_body(block)?;
        }
    }

    /// [`Self::fill`] for body bytes: the end of the stream or a timeout fails the body.
    fn fill_body(
        &mut self,
        block: &mut dyn FnMut(RawFd, Instant) -> io::Result<()>,
    ) -> io::Result<()> {
        let r = self.fill(block);
        self.body_read(r)
    }

    /// What a read of body bytes means for the body: `Ok(false)` (the end of the stream)
    /// or a timeout fails it, with the status to refuse it with.
    fn body_read(&mut self, r: io::Result<bool>) -> io::Result<()> {
        match r {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.fail(
                "client closed the connection mid-body".into(),
                Some(HttpError::BadRequest("request body ended early")),
            )),
            // A reset is the client going away too, not an application error.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) =>
            {
                Err(self.fail(
                    format!("client reset the connection mid-body: {e}"),
                    Some(HttpError::BadRequest("request body ended early")),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(self.fail(
                "timed out reading the request body".into(),
                Some(HttpError::Timeout),
            )),
            Err(e) => Err(self.fail(format!("error reading the request body: {e}"), None)),
        }
    }

    /// How many bytes a read of up to `size` would return from a Content-Length body
    /// with nothing decoded pending, when most of them are still in the socket: the
    /// caller then allocates the result and [`read_exact_into`](Self::read_exact_into)
    /// reads into it, so the body is copied once (by the kernel), not twice.
    pub fn direct_len(&self, size: Option<usize>) -> Option<usize> {
        let (true, Body::Length(left)) = (self.pending.is_empty(), &self.body) else {
            return None;
        };
        let want = (size.unwrap_or(usize::MAX) as u64).min(*left) as usize;
        let buffered = self.buf.len() - self.pos;
        (want > buffered && want - buffered >= DIRECT_MIN).then_some(want)
    }

    /// Fills `out` with the next body bytes (the buffered ones, then straight from the
    /// socket), blocking as needed; see [`direct_len`](Self::direct_len).
    pub fn read_exact_into(
        &mut self,
        out: &mut [u8],
        block: &mut dyn FnMut(RawFd, Instant) -> io::Result<()>,
    ) -> io::Result<()> {
        let Body::Length(left) = self.body else {
            return Err(io::Error::other("not a Content-Length body"));
        };
        if out.len() as u64 > left {
            return Err(io::Error::other("read past the body"));
        }
        let have = (self.buf.len() - self.pos).min(out.len());
        out[..have].copy_from_slice(&self.buf[self.pos..self.pos + have]);
        self.pos += have;
        let mut filled = have;
        if filled < out.len() {
            if self.fd < 0 {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "request is over",
                ));
            }
            self.continue_once()?;
        }
        // Each wait for more bytes may take `timeout`: the clock starts at the first
        // wait after progress.
        let mut deadline = None;
        while filled < out.len() {
            let r = match socket::read(self.fd, &mut out[filled..]) {
                Ok(n) => {
                    filled += n;
                    deadline = None;
                    Ok(n > 0)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let d = *deadline.get_or_insert_with(|| Instant::now() + self.timeout);
                    block(self.fd, d).map(|_| true)
                }
                Err(e) => Err(e),
            };
            self.body_read(r)?;
        }
        self.body = match left - out.len() as u64 {
            0 => Body::Done,
            n => Body::Length(n),
        };
        Ok(())
    }

    /// Reads up to `size` bytes (all when `None`), blocking until that many or the
    /// end, and hands them to `emit`. A Content-Length body goes to `emit` straight from
    /// the read buffer: the only copy after the kernel's is the one `emit` makes.
    pub fn read_with<R>(
        &mut self,
        size: Option<usize>,
        block: &mut dyn FnMut(RawFd, Instant) -> io::Result<()>,
        emit: impl FnOnce(&[u8]) -> R,
    ) -> io::Result<R> {
        let size = size.unwrap_or(usize::MAX);
        if let (true, Body::Length(left)) = (self.pending.is_empty(), &self.body) {
            let left = *left;
            let want = (size as u64).min(left) as usize;
            while self.buf.len() - self.pos < want {
                self.fill_body(block)?;
            }
            let start = self.pos;
            self.pos += want;
            self.body = match left - want as u64 {
                0 => Body::Done,
                n => Body::Length(n),
            };
            return Ok(emit(&self.buf[start..start + want]));
        }
        while self.pending.len() < size {
            let want = (size - self.pending.len()).min(READ_CHUNK * 4);
            if !self.decode_more(want, block)? {
                break;
            }
        }
        let n = size.min(self.pending.len());
        let out = emit(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(out)
    }

    /// Reads one line (through `\n`), at most `limit` bytes.
    pub fn readline(
        &mut self,
        limit: Option<usize>,
        block: &mut dyn FnMut(RawFd, Instant) -> io::Result<()>,
    ) -> io::Result<Vec<u8>> {
        let limit = limit.unwrap_or(usize::MAX);
        let mut scanned = 0;
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.pending[scanned..]) {
                let end = (scanned + i + 1).min(limit);
                let rest = self.pending.split_off(end);
                return Ok(std::mem::replace(&mut self.pending, rest));
            }
            if self.pending.len() >= limit {
                let rest = self.pending.split_off(limit);
                return Ok(std::mem::replace(&mut self.pending, rest));
            }
            scanned = self.pending.len();
            if !self.decode_more(READ_CHUNK, block)? {
                return Ok(std::mem::take(&mut self.pending));
            }
        }
    }

    /// Reads and discards what is left of the body, up to [`DRAIN_MAX`] bytes, so the
    /// connection can carry another request. Returns false if it could not.
    pub fn drain(&mut self, block: &mut dyn FnMut(RawFd, Instant) -> io::Result<()>) -> bool {
        if !self.drainable() {
            return false;
        }
        let mut seen = 0u64;
        while !self.is_done() {
            if seen > DRAIN_MAX {
                return false;
            }
            self.pending.clear();
            match self.decode_more(READ_CHUNK, block) {
                Ok(true) => seen += self.pending.len() as u64,
                Ok(false) => break,
                Err(_) => return false,
            }
        }
        self.pending.clear();
        self.failed.is_none()
    }

    /// Detaches from the socket: later reads by a lingering app raise.
    pub fn detach(&mut self) {
        self.fd = -1;
    }
}

/// Releases the GIL while waiting for the socket to become readable.
pub fn blocking_wait(py: Python<'_>) -> impl FnMut(RawFd, Instant) -> io::Result<()> + '_ {
    move |fd, deadline| py.detach(|| socket::wait(fd, Interest::Read, Some(deadline)))
}

/// `wsgi.input`: a file-like view of the request body.
#[pyclass(module = "ferrule._ferrule", freelist = 64, frozen)]
pub struct InputStream {
    reader: Mutex<Option<BodyReader>>,
}

impl InputStream {
    pub fn new(reader: BodyReader) -> InputStream {
        InputStream {
            reader: Mutex::new(Some(reader)),
        }
    }

    /// An input with no body. It holds no state, so one is shared by every request
    /// without a body (the environ template's `wsgi.input`).
    pub fn empty() -> InputStream {
        InputStream {
            reader: Mutex::new(None),
        }
    }

    /// Takes the reader back at the end of the exchange.
    pub fn take(&self) -> Option<BodyReader> {
        match self.reader.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        }
    }

    fn with<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(
            &mut BodyReader,
            &mut dyn FnMut(RawFd, Instant) -> io::Result<()>,
        ) -> io::Result<R>,
        empty: R,
    ) -> PyResult<R> {
        let mut guard = self
            .reader
            .try_lock()
            .map_err(|_| PyRuntimeError::new_err("wsgi.input is being read by another thread"))?;
        let Some(reader) = guard.as_mut() else {
            return Ok(empty);
        };
        let mut block = blocking_wait(py);
        let r = f(reader, &mut block);
        reader.publish();
        r.map_err(|e| PyIOError::new_err(e.to_string()))
    }
}

/// A new `bytes` object of `n` bytes written by `fill` before anyone else sees it
/// (CPython's `PyBytes_FromStringAndSize(NULL, n)` idiom: no zeroing, no copy).
fn bytes_filled_by(
    py: Python<'_>,
    n: usize,
    fill: impl FnOnce(&mut [u8]) -> io::Result<()>,
) -> io::Result<Bound<'_, PyBytes>> {
    let len = isize::try_from(n).map_err(|_| io::Error::other("read too large"))?;
    // SAFETY: a NULL source asks CPython for an uninitialised object of `len` bytes.
    let ptr = unsafe { pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), len) };
    if ptr.is_null() {
        let err = PyErr::take(py).map_or_else(|| "out of memory".to_string(), |e| e.to_string());
        return Err(io::Error::new(io::ErrorKind::OutOfMemory, err));
    }
    // SAFETY: `ptr` is a new, owned reference to a bytes object.
    let bytes = unsafe { Bound::from_owned_ptr(py, ptr).cast_into_unchecked::<PyBytes>() };
    // SAFETY: the object's buffer holds `n` bytes, and nothing else references the object
    // until we return it; the slice does not outlive this call.
    let out =
        unsafe { std::slice::from_raw_parts_mut(pyo3::ffi::PyBytes_AsString(ptr).cast::<u8>(), n) };
    fill(out)?;
    Ok(bytes)
}

fn size_arg(size: Option<isize>) -> Option<usize> {
    match size {
        Some(n) if n >= 0 => Some(n as usize),
        _ => None,
    }
}

#[pymethods]
impl InputStream {
    #[pyo3(signature = (size=-1))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let size = size_arg(size);
        let data = self.with(
            py,
            |r, b| match r.direct_len(size) {
                Some(n) => bytes_filled_by(py, n, |out| r.read_exact_into(out, b)),
                None => r.read_with(size, b, |bytes| PyBytes::new(py, bytes)),
            },
            PyBytes::new(py, b""),
        )?;
        Ok(data)
    }

    #[pyo3(signature = (size=-1))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let data = self.with(py, |r, b| r.readline(size_arg(size), b), Vec::new())?;
        Ok(PyBytes::new(py, &data))
    }

    #[pyo3(signature = (hint=-1))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<isize>) -> PyResult<Bound<'py, PyList>> {
        let hint = size_arg(hint).filter(|h| *h > 0);
        let lines = self.with(
            py,
            |r, b| {
                let mut lines = Vec::new();
                let mut total = 0;
                loop {
                    let line = r.readline(None, b)?;
                    if line.is_empty() {
                        break;
                    }
                    total += line.len();
                    lines.push(line);
                    if hint.is_some_and(|h| total >= h) {
                        break;
                    }
                }
                Ok(lines)
            },
            Vec::new(),
        )?;
        PyList::new(py, lines.iter().map(|l| PyBytes::new(py, l)))
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.readline(py, None)?;
        Ok(if line.as_bytes().is_empty() {
            None
        } else {
            Some(line)
        })
    }

    /// Input streams are not seekable or writable; these exist for file-like duck typing.
    fn readable(&self) -> bool {
        true
    }

    fn close(&self) {}

    #[getter]
    fn closed(&self) -> bool {
        false
    }

    fn __repr__(&self) -> String {
        "<ferrule InputStream>".to_string()
    }
}
