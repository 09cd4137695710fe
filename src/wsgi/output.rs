//! The response writer: sends the head and body with the right framing, enforces
//! the app's Content-Length, and decides whether the connection can be kept.
//!
//! One `writev` carries the head and the first body chunk together. A complete response
//! of up to [`DEFER_MAX`] bytes on a connection that stays open may instead be *held*
//! (`defer`): the exchange hands it to the connection, and the loop writes the held
//! responses of all its connections together when it runs out of ready work
//! (src/server/deferred.rs).
//!
//! A complete response that the socket does not take in one go is *parked*: the bytes it
//! did not take are handed to the connection, whose writable events send them, so a
//! client that reads slowly holds no thread once the app is done. What is left of the
//! app's last `bytes` object is parked as a reference to it (src/wsgi/bytes_tail.rs);
//! anything before that (the head, earlier chunks) is copied. Parked bytes of all
//! connections share a budget ([`PARKED_MAX`]); past it the writer waits for the socket,
//! as it does for a body still being produced.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::bytes_tail::BytesTail;
use super::input::BodyState;
use crate::http::date;
use crate::http::error::HttpError;
use crate::http::response::{
    chunk_size_line, head_end, head_start, status_has_no_body, BodyFraming, DATE_LEN,
};
use crate::net::file_tail::Tail;
use crate::net::socket::{self, Interest};

/// The largest complete response that may be held for the loop's next flush.
pub const DEFER_MAX: usize = 16 * 1024;

/// The most response bytes this process keeps parked for slow clients, all connections
/// together: memory is bounded, and beyond this a slow client holds a thread again.
pub const PARKED_MAX: usize = 64 << 20;

/// Response bytes parked now (the sum of every live [`Parked`]).
static PARKED: AtomicUsize = AtomicUsize::new(0);

/// A share of [`PARKED_MAX`], given back when dropped (when the bytes went out, or their
/// connection closed).
#[derive(Debug, Default)]
pub struct Parked(usize);

impl Parked {
    /// Reserves `n` bytes of the budget, if that many are left.
    fn reserve(n: usize) -> Option<Parked> {
        let before = PARKED.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) <= PARKED_MAX {
            Some(Parked(n))
        } else {
            PARKED.fetch_sub(n, Ordering::Relaxed);
            None
        }
    }

    /// Moves `n` bytes of this share (at most all of it) into a share of its own.
    fn split_off(&mut self, n: usize) -> Parked {
        let n = n.min(self.0);
        self.0 -= n;
        Parked(n)
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        if self.0 > 0 {
            PARKED.fetch_sub(self.0, Ordering::Relaxed);
        }
    }
}

/// What the app declared through `start_response`, already encoded as the start of the
/// response head: the writer fills in the `Date`, appends the framing lines and sends
/// these very bytes (no second buffer, no copy).
#[derive(Debug)]
pub struct Declared {
    /// Status line, `Server`, `Date` (blank until sent), then the app's header lines.
    head: Vec<u8>,
    date_at: usize,
    headers_at: usize,
    headers_end: usize,
    pub code: u16,
    pub content_length: Option<u64>,
    /// The app asked for `Connection: close`.
    pub close: bool,
}

impl Declared {
    /// `status` is the status line (`200 OK`); `room` the bytes expected for headers.
    pub fn new(status: &[u8], code: u16, room: usize) -> Declared {
        Declared::in_buffer(Vec::new(), status, code, room)
    }

    /// [`Declared::new`], writing into `head`'s allocation (its contents are dropped).
    pub fn in_buffer(mut head: Vec<u8>, status: &[u8], code: u16, room: usize) -> Declared {
        head.clear();
        head.reserve(status.len() + room + 160);
        let date_at = head_start(&mut head, status);
        let headers_at = head.len();
        Declared {
            head,
            date_at,
            headers_at,
            headers_end: headers_at,
            code,
            content_length: None,
            close: false,
        }
    }

    /// Appends one `name: value` header line.
    pub fn push_header(&mut self, name: &[u8], value: &[u8]) {
        self.head.extend_from_slice(name);
        self.head.extend_from_slice(b": ");
        self.head.extend_from_slice(value);
        self.head.extend_from_slice(b"\r\n");
        self.headers_end = self.head.len();
    }

    /// The app's headers as `Name: value\r\n` lines (hop-by-hop headers removed).
    pub fn headers(&self) -> &[u8] {
        &self.head[self.headers_at..self.headers_end]
    }

    /// Completes the head to send, once.
    fn finish(
        &mut self,
        date: &[u8; DATE_LEN],
        framing: BodyFraming,
        connection: Option<&'static [u8]>,
    ) {
        self.head[self.date_at..self.date_at + DATE_LEN].copy_from_slice(date);
        let app_gave_length = self.content_length.is_some();
        head_end(&mut self.head, framing, app_gave_length, connection);
    }

    /// The complete head ([`Declared::finish`] must have run).
    fn head(&self) -> &[u8] {
        &self.head
    }
}

/// Response state for one exchange.
pub struct Output {
    fd: RawFd,
    http11: bool,
    head_only: bool,
    pub declared: Option<Declared>,
    pub headers_sent: bool,
    framing: BodyFraming,
    /// Body bytes passed on (or, for HEAD, that would have been).
    body_sent: u64,
    /// The connection cannot carry another request after this one.
    pub must_close: bool,
    /// The app's body was longer than its Content-Length (truncated).
    pub truncated: bool,
    /// The app's body was shorter than its Content-Length.
    pub short: bool,
    pub finished: bool,
    timeout: Duration,
    /// The request body's state, when the request has one.
    body: Option<Arc<BodyState>>,
    /// A complete response may be held instead of written ([`Output::take_held`]).
    pub defer: bool,
    /// A held response, or the parked end of one (then `parked` is its budget share).
    held: Vec<u8>,
    parked: Parked,
    /// The end of the app's last `bytes` object the socket did not take, parked.
    bytes_tail: Option<BytesTail>,
    /// The end of a `wsgi.file_wrapper` file the socket did not take, parked.
    file_tail: Option<Tail>,
    /// An empty buffer for the next [`Declared`] head (see [`Output::recycle`]).
    pub spare_head: Vec<u8>,
}

/// Why a send failed.
#[derive(Debug)]
pub enum SendError {
    /// The client went away or stopped reading.
    Io(io::Error),
    /// Body bytes before `start_response` was called.
    NotStarted,
}

impl From<io::Error> for SendError {
    fn from(e: io::Error) -> Self {
        SendError::Io(e)
    }
}

/// The slices of one write: the usual few (head and body) on the stack, more on the heap.
#[derive(Default)]
struct Slices<'a> {
    inline: [&'a [u8]; 4],
    len: usize,
    heap: Vec<&'a [u8]>,
}

impl<'a> Slices<'a> {
    fn push(&mut self, s: &'a [u8]) {
        if self.heap.is_empty() && self.len < self.inline.len() {
            self.inline[self.len] = s;
            self.len += 1;
            return;
        }
        if self.heap.is_empty() {
            self.heap.extend_from_slice(&self.inline[..self.len]);
        }
        self.heap.push(s);
    }

    fn as_slice(&self) -> &[&'a [u8]] {
        if self.heap.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }
}

pub type Block<'a> = dyn FnMut(RawFd, Instant) -> io::Result<()> + 'a;

impl Output {
    pub fn new(
        fd: RawFd,
        http11: bool,
        head_only: bool,
        client_keep_alive: bool,
        timeout: Duration,
        body: Option<Arc<BodyState>>,
    ) -> Output {
        Output {
            fd,
            http11,
            head_only,
            declared: None,
            headers_sent: false,
            framing: BodyFraming::NoBody,
            body_sent: 0,
            must_close: !client_keep_alive,
            truncated: false,
            short: false,
            finished: false,
            timeout,
            body,
            defer: false,
            held: Vec::new(),
            parked: Parked::default(),
            bytes_tail: None,
            file_tail: None,
            spare_head: Vec::new(),
        }
    }

    /// Gives this (new) exchange the head buffer of a finished one.
    pub fn recycle(&mut self, old: &mut Output) {
        self.spare_head = match old.declared.take() {
            Some(d) => d.head,
            None => std::mem::take(&mut old.spare_head),
        };
    }

    /// The allocation to build a held response in (`buf` is empty; its capacity counts).
    pub fn hold_in(&mut self, buf: Vec<u8>) {
        debug_assert!(buf.is_empty(), "a held response given as a spare buffer");
        self.held = buf;
    }

    /// The complete response held instead of written, or the end of one the socket did
    /// not take (empty if none), with its share of the parked-bytes budget: the caller
    /// writes it, now or when the socket has room.
    pub fn take_held(&mut self) -> (Vec<u8>, Parked) {
        (
            std::mem::take(&mut self.held),
            std::mem::take(&mut self.parked),
        )
    }

    /// The end of the app's last `bytes` object parked by [`Output::send_owned`], for the
    /// connection to send after [`Output::take_held`]'s bytes.
    pub fn take_bytes_tail(&mut self) -> Option<BytesTail> {
        self.bytes_tail.take()
    }

    /// The end of a file body parked by [`Output::send_file`], for the connection to send.
    pub fn take_file_tail(&mut self) -> Option<Tail> {
        self.file_tail.take()
    }

    /// Why the request body was refused, if it was.
    pub fn body_refused(&self) -> Option<HttpError> {
        self.body.as_ref().and_then(|b| b.refused())
    }

    /// Body bytes sent (none for HEAD), as the access log counts them.
    pub fn body_bytes(&self) -> u64 {
        if self.head_only {
            0
        } else {
            self.body_sent
        }
    }

    /// The status code sent (or to be sent), 0 if none.
    pub fn code(&self) -> u16 {
        self.declared.as_ref().map_or(0, |d| d.code)
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Ends the exchange for a lingering app: later writes fail.
    pub fn detach(&mut self) {
        self.fd = -1;
    }

    /// Whether the connection may carry another request.
    pub fn keep_alive(&self) -> bool {
        !self.must_close
    }

    fn choose_framing(&mut self, complete_len: Option<u64>) -> BodyFraming {
        let d = self.declared.as_ref();
        let code = d.map_or(500, |d| d.code);
        if status_has_no_body(code) {
            return BodyFraming::NoBody;
        }
        if let Some(n) = d.and_then(|d| d.content_length) {
            return BodyFraming::Length(n);
        }
        if let Some(n) = complete_len {
            return BodyFraming::Length(n);
        }
        if self.http11 {
            BodyFraming::Chunked
        } else {
            BodyFraming::Close
        }
    }

    /// Sends body `chunks`; `last` means the body is complete after them.
    pub fn send(
        &mut self,
        chunks: &[&[u8]],
        last: bool,
        block: &mut Block<'_>,
    ) -> Result<(), SendError> {
        self.send_owned(chunks, None, last, block)
    }

    /// [`Output::send`] where the last chunk is the contents of `owner`: if the socket
    /// leaves part of it unsent, that part is parked by reference, not copied.
    pub fn send_owned(
        &mut self,
        chunks: &[&[u8]],
        owner: Option<&Bound<'_, PyBytes>>,
        last: bool,
        block: &mut Block<'_>,
    ) -> Result<(), SendError> {
        if self.finished {
            return Ok(());
        }
        if self.fd < 0 {
            return Err(SendError::Io(io::Error::new(
                io::ErrorKind::NotConnected,
                "response is over",
            )));
        }
        let size: usize = chunks.iter().map(|c| c.len()).sum();
        let mut with_head = false;
        if !self.headers_sent {
            if self.declared.is_none() {
                return Err(SendError::NotStarted);
            }
            // PEP 3333: hold the head until the first non-empty chunk or the end.
            if size == 0 && !last {
                return Ok(());
            }
            self.prepare_head(if last { Some(size as u64) } else { None })?;
            with_head = true;
        }

        // Select what goes on the wire.
        let mut parts = Slices::default();
        if let Some(d) = self.declared.as_ref().filter(|_| with_head) {
            parts.push(d.head());
        }
        let mut size_lines: Vec<[u8; 18]> = Vec::new();
        let send_body = !self.head_only && self.framing != BodyFraming::NoBody;
        match self.framing {
            BodyFraming::Length(n) => {
                for c in chunks {
                    let room = n.saturating_sub(self.body_sent);
                    let take = (c.len() as u64).min(room) as usize;
                    if take < c.len() {
                        self.truncated = true;
                    }
                    if take > 0 && send_body {
                        parts.push(&c[..take]);
                    }
                    self.body_sent += take as u64;
                }
                if last && self.body_sent < n && !self.head_only {
                    // The app promised more than it gave: the message cannot end cleanly.
                    self.must_close = true;
                    self.short = true;
                }
            }
            BodyFraming::Chunked => {
                let nonempty = chunks.iter().filter(|c| !c.is_empty()).count();
                size_lines.resize(nonempty, [0u8; 18]);
                if send_body {
                    let mut lines = size_lines.iter_mut();
                    for c in chunks.iter().filter(|c| !c.is_empty()) {
                        if let Some(line) = lines.next() {
                            let len = chunk_size_line(c.len(), line).len();
                            parts.push(&line[..len]);
                            parts.push(c);
                            parts.push(b"\r\n");
                        }
                    }
                    if last {
                        parts.push(b"0\r\n\r\n");
                    }
                }
                self.body_sent += size as u64;
            }
            BodyFraming::Close => {
                if send_body {
                    for c in chunks.iter().filter(|c| !c.is_empty()) {
                        parts.push(c);
                    }
                }
                self.body_sent += size as u64;
            }
            BodyFraming::NoBody => {
                self.body_sent += size as u64;
            }
        }
        if last {
            self.finished = true;
        }
        let parts = parts.as_slice();
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total == 0 {
            return Ok(());
        }
        // Only a response that is complete is held: PEP 3333 wants each block of a body
        // still being produced on the wire before the next is asked for.
        let complete =
            self.finished || matches!(self.framing, BodyFraming::Length(n) if self.body_sent >= n);
        if self.defer && complete && !self.must_close && self.held.len() + total <= DEFER_MAX {
            self.held.reserve_exact(total);
            for p in parts {
                self.held.extend_from_slice(p);
            }
            return Ok(());
        }
        // Nothing follows a held response on the wire: it is complete, so later sends
        // carry no bytes (a Content-Length body is truncated; other framings finished).
        debug_assert!(self.held.is_empty(), "bytes after a held response");
        // Send in groups of up to 64 slices (writev's limit here). The last group of a
        // complete response may leave its end parked.
        let groups = parts.chunks(64);
        let last_group = groups.len() - 1;
        for (i, group) in groups.enumerate() {
            if complete && i == last_group {
                let mut park = Park {
                    held: &mut self.held,
                    parked: &mut self.parked,
                    bytes_tail: &mut self.bytes_tail,
                };
                write_or_park(self.fd, self.timeout, group, owner, &mut park, block)?;
            } else {
                socket::write_all_vectored(self.fd, group, self.timeout, block)?;
            }
        }
        Ok(())
    }

    /// Ends the body (an empty body if nothing was sent yet).
    pub fn finish(&mut self, block: &mut Block<'_>) -> Result<(), SendError> {
        self.send(&[], true, block)
    }

    /// Sends `count` bytes of `file_fd` from `offset` with sendfile(2) as the body.
    pub fn send_file(
        &mut self,
        file_fd: RawFd,
        mut offset: i64,
        count: u64,
        block: &mut Block<'_>,
    ) -> Result<(), SendError> {
        // The head (and Content-Length) first; `last` with an exact size.
        let declared_len = self.declared.as_ref().and_then(|d| d.content_length);
        let count = declared_len.map_or(count, |n| n.min(count));
        if !self.headers_sent {
            if self.declared.is_none() {
                return Err(SendError::NotStarted);
            }
            self.prepare_head(Some(count))?;
            if let BodyFraming::Length(n) = self.framing {
                if n > count {
                    self.must_close = true;
                }
            }
            let head = self.declared.as_ref().map_or(&[][..], Declared::head);
            socket::write_all_vectored(self.fd, &[head], self.timeout, block)?;
        }
        if self.head_only
            || self.framing == BodyFraming::NoBody
            || self.framing == BodyFraming::Chunked
        {
            // Chunked would need framing around sendfile; callers avoid it (they pass a
            // length), so this only happens for HEAD/no-body statuses.
            self.body_sent += count;
            self.finished = true;
            return Ok(());
        }
        let mut left = count;
        let mut deadline: Option<Instant> = None;
        while left > 0 {
            match socket::sendfile(self.fd, file_fd, &mut offset, left.min(1 << 30) as usize) {
                Ok(0) => {
                    // The file is shorter than promised.
                    self.must_close = true;
                    break;
                }
                Ok(n) => {
                    left -= n as u64;
                    self.body_sent += n as u64;
                    deadline = None;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Once sendfile has worked for this file, its end can wait in the
                    // connection (through a descriptor of its own: the app closes its
                    // file when the response is over) instead of in this thread.
                    let tail = (left < count)
                        .then(|| Tail::duplicate(file_fd, offset as u64, left))
                        .flatten();
                    if let Some(tail) = tail {
                        self.body_sent += left;
                        self.file_tail = Some(tail);
                        break;
                    }
                    let d = *deadline.get_or_insert_with(|| Instant::now() + self.timeout);
                    block(self.fd, d)?;
                }
                Err(e) => return Err(SendError::Io(e)),
            }
        }
        self.finished = true;
        Ok(())
    }

    /// Chooses the framing and completes the declared head.
    fn prepare_head(&mut self, complete_len: Option<u64>) -> Result<(), SendError> {
        self.framing = self.choose_framing(complete_len);
        let d = self.declared.as_mut().ok_or(SendError::NotStarted)?;
        if d.close
            || self.framing == BodyFraming::Close
            || self.body.as_ref().is_some_and(|b| b.closes())
        {
            self.must_close = true;
        }
        let connection: Option<&'static [u8]> = match (self.http11, self.must_close) {
            (true, false) => None,
            (_, true) => Some(b"close"),
            (false, false) => Some(b"keep-alive"),
        };
        let framing = self.framing;
        date::with_now(|now| d.finish(now, framing, connection));
        self.headers_sent = true;
        Ok(())
    }
}

/// Where [`write_or_park`] leaves what the socket did not take.
struct Park<'a> {
    /// Copied bytes, sent first.
    held: &'a mut Vec<u8>,
    /// `held`'s share of the budget.
    parked: &'a mut Parked,
    /// The end of the owner's bytes, sent after `held`.
    bytes_tail: &'a mut Option<BytesTail>,
}

/// Where the last of `parts` lies in `owner`'s bytes (its start and end), if it is a slice
/// of them.
fn within_owner(parts: &[&[u8]], owner: Option<&Bound<'_, PyBytes>>) -> Option<(usize, usize)> {
    let (last, bytes) = (parts.last()?, owner?.as_bytes());
    let start = (last.as_ptr() as usize).checked_sub(bytes.as_ptr() as usize)?;
    let end = start + last.len();
    (!last.is_empty() && end <= bytes.len()).then_some((start, end))
}

/// Writes the end of a complete response; what the socket does not take now is parked
/// when the budget allows, else waited for. The unsent part of the last slice, when it
/// is `owner`'s bytes, is parked by reference; the rest is copied into `held`.
fn write_or_park(
    fd: RawFd,
    timeout: Duration,
    parts: &[&[u8]],
    owner: Option<&Bound<'_, PyBytes>>,
    park: &mut Park<'_>,
    block: &mut Block<'_>,
) -> Result<(), SendError> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let written = match socket::writev(fd, parts) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(SendError::Io(e)),
    };
    if written >= total {
        return Ok(());
    }
    let Some(mut share) = Parked::reserve(total - written) else {
        socket::write_all_vectored_from(fd, parts, written, timeout, block)?;
        return Ok(());
    };
    let (copied, copied_len) = match (within_owner(parts, owner), owner) {
        (Some((start, end)), Some(owner)) => {
            let before = total - (end - start);
            let from = start + written.saturating_sub(before);
            let tail_share = share.split_off(end - from);
            let tail = BytesTail::new(owner.clone().into(), from, end, tail_share);
            *park.bytes_tail = Some(tail);
            (&parts[..parts.len() - 1], before)
        }
        _ => (parts, total),
    };
    if written < copied_len {
        park.held.reserve_exact(copied_len - written);
        let mut skip = written;
        for p in copied {
            let from = skip.min(p.len());
            skip -= from;
            park.held.extend_from_slice(&p[from..]);
        }
    }
    *park.parked = share;
    Ok(())
}

/// Releases the GIL while waiting for the socket to accept more bytes.
pub fn blocking_wait(py: pyo3::Python<'_>) -> impl FnMut(RawFd, Instant) -> io::Result<()> + '_ {
    move |fd, deadline| py.detach(|| socket::wait(fd, Interest::Write, Some(deadline)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(fd: RawFd, content_length: Option<u64>, close: bool) -> Output {
        let mut out = Output::new(fd, true, false, true, Duration::from_secs(1), None);
        out.defer = true;
        let mut d = Declared::new(b"200 OK", 200, 0);
        d.content_length = content_length;
        d.close = close;
        out.declared = Some(d);
        out
    }

    fn pair() -> (crate::net::socket::Socket, crate::net::socket::Socket) {
        crate::net::socket::stream_pair().unwrap()
    }

    fn never(_: RawFd, _: Instant) -> io::Result<()> {
        Err(io::Error::other("must not wait"))
    }

    fn written(fd: RawFd) -> usize {
        let mut buf = [0u8; 65536];
        socket::read(fd, &mut buf).unwrap_or(0)
    }

    #[test]
    fn slices_keep_their_order_past_the_inline_ones() {
        let words: Vec<Vec<u8>> = (0..9).map(|i| vec![b'a' + i]).collect();
        for n in 0..words.len() {
            let mut s = Slices::default();
            for w in &words[..n] {
                s.push(w);
            }
            let got: Vec<&[u8]> = s.as_slice().to_vec();
            let want: Vec<&[u8]> = words[..n].iter().map(Vec::as_slice).collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn a_complete_small_response_is_held_not_written() {
        let (a, b) = pair();
        let mut out = output(a.fd(), None, false);
        out.send(&[b"hello"], true, &mut never).unwrap();
        assert_eq!(written(b.fd()), 0);
        let (held, _) = out.take_held();
        assert!(held.starts_with(b"HTTP/1.1 200 OK\r\n") && held.ends_with(b"\r\n\r\nhello"));
    }

    #[test]
    fn a_body_that_completes_its_content_length_is_held() {
        let (a, b) = pair();
        let mut out = output(a.fd(), Some(5), false);
        out.send(&[b"hello"], false, &mut never).unwrap();
        out.finish(&mut never).unwrap();
        assert_eq!(written(b.fd()), 0);
        assert!(out.take_held().0.ends_with(b"hello"));
    }

    #[test]
    fn a_block_of_a_body_still_coming_is_written_at_once() {
        let (a, b) = pair();
        let mut out = output(a.fd(), Some(10), false);
        out.send(&[b"hello"], false, &mut never).unwrap();
        assert!(written(b.fd()) > 5);
        assert!(out.take_held().0.is_empty());
        let (a, b) = pair();
        let mut chunked = output(a.fd(), None, false);
        chunked.send(&[b"hello"], false, &mut never).unwrap();
        assert!(written(b.fd()) > 5);
        assert!(chunked.take_held().0.is_empty());
    }

    #[test]
    fn closing_large_or_not_allowed_responses_are_written_at_once() {
        let (a, b) = pair();
        let mut closing = output(a.fd(), None, true);
        closing.send(&[b"bye"], true, &mut never).unwrap();
        assert!(written(b.fd()) > 3);
        assert!(closing.take_held().0.is_empty());

        let (a, b) = pair();
        let big = vec![b'x'; DEFER_MAX];
        let mut large = output(a.fd(), None, false);
        large.send(&[&big], true, &mut never).unwrap();
        assert!(written(b.fd()) > 0);
        assert!(large.take_held().0.is_empty());

        let (a, b) = pair();
        let mut plain = output(a.fd(), None, false);
        plain.defer = false;
        plain.send(&[b"hello"], true, &mut never).unwrap();
        assert!(written(b.fd()) > 5);
    }

    /// Serializes the tests that fill the parked-bytes budget (it is process-wide).
    static BUDGET: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Everything `fd`'s peer wrote, until it stops (non-blocking reads).
    /// Writes `bytes` to `fd` whole, reading what arrived at `peer` (and earlier output)
    /// into `got` whenever the socket is full.
    fn write_draining(fd: RawFd, peer: RawFd, bytes: &[u8], got: &mut Vec<u8>) {
        drain(peer, got);
        let mut rest = bytes;
        while !rest.is_empty() {
            match socket::writev(fd, &[rest]) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => drain(peer, got),
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// `got` is a response whose head announces `body`'s length and whose body is `body`.
    fn assert_response_of(got: &[u8], body: &[u8]) {
        let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&got[..head_end]).to_string();
        let length = format!("Content-Length: {}", body.len());
        assert!(head.contains(&length), "{head}");
        assert!(got[head_end..] == body[..]);
    }

    /// Sends a parked bytes tail until it is all out, reading the other end meanwhile.
    fn resume_all(tail: &mut BytesTail, fd: RawFd, peer: RawFd, got: &mut Vec<u8>) {
        while !tail.resume(fd).unwrap() {
            drain(peer, got);
        }
        drain(peer, got);
    }

    #[test]
    fn the_end_of_the_apps_bytes_is_parked_by_reference_not_copied() {
        let _budget = BUDGET.lock().unwrap_or_else(|e| e.into_inner());
        Python::initialize();
        Python::attach(|py| {
            let data: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
            // Alone, the last object is partly sent; after a first one of 2 MiB, which
            // the socket does not take whole either, it is not sent at all.
            let (first, last) = (
                PyBytes::new(py, &data[..2 << 20]),
                PyBytes::new(py, &data[2 << 20..]),
            );
            for chunks in [vec![&last], vec![&first, &last]] {
                let body: Vec<u8> = chunks.iter().flat_map(|c| c.as_bytes().to_vec()).collect();
                let (a, b) = pair();
                let mut out = output(a.fd(), None, true);
                let before = PARKED.load(Ordering::Relaxed);
                let slices: Vec<&[u8]> = chunks.iter().map(|c| c.as_bytes()).collect();
                let owner = chunks.last().copied();
                out.send_owned(&slices, owner, true, &mut never).unwrap();
                let (held, parked) = out.take_held();
                let mut tail = out.take_bytes_tail().expect("a parked tail");
                // Nothing of the last object was copied: as much of what the socket did
                // not take as lies in it is the tail; only what came before it is held.
                let whole = held.len() as u64 + tail.left();
                let last_len = last.as_bytes().len() as u64;
                assert!(whole > 0 && whole < body.len() as u64);
                assert_eq!(tail.left(), whole.min(last_len));
                assert_eq!(held.is_empty(), chunks.len() == 1);
                assert_eq!(parked.0, held.len());
                assert_eq!(PARKED.load(Ordering::Relaxed) as u64, before as u64 + whole);
                // What went out, then the copied part, then the tail, is the response.
                let mut got = Vec::new();
                write_draining(a.fd(), b.fd(), &held, &mut got);
                resume_all(&mut tail, a.fd(), b.fd(), &mut got);
                assert_response_of(&got, &body);
                drop((parked, tail));
                assert_eq!(PARKED.load(Ordering::Relaxed), before);
            }
        });
    }

    fn drain(fd: RawFd, into: &mut Vec<u8>) {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n @ 1..) = socket::read(fd, &mut buf) {
            into.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn the_end_of_a_complete_response_the_socket_refuses_is_parked() {
        let _budget = BUDGET.lock().unwrap_or_else(|e| e.into_inner());
        let (a, b) = pair();
        let body: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
        let mut out = output(a.fd(), None, true);
        let before = PARKED.load(Ordering::Relaxed);
        // `never`: the writer must not wait for the client.
        out.send(&[&body], true, &mut never).unwrap();
        let (held, parked) = out.take_held();
        assert!(!held.is_empty() && held.len() < body.len());
        assert_eq!(parked.0, held.len());
        assert_eq!(PARKED.load(Ordering::Relaxed), before + held.len());
        // What went out, then the parked rest, is the whole response.
        let mut got = Vec::new();
        write_draining(a.fd(), b.fd(), &held, &mut got);
        drain(b.fd(), &mut got);
        assert_response_of(&got, &body);
        drop(parked);
        assert_eq!(PARKED.load(Ordering::Relaxed), before);
    }

    #[test]
    fn past_the_budget_the_writer_waits_for_the_client() {
        let _budget = BUDGET.lock().unwrap_or_else(|e| e.into_inner());
        assert!(Parked::reserve(PARKED_MAX + 1).is_none());
        let hog = Parked::reserve(PARKED_MAX - PARKED.load(Ordering::Relaxed)).unwrap();
        let (a, b) = pair();
        let body = vec![b'z'; 4 << 20];
        let mut out = output(a.fd(), None, true);
        let mut got = Vec::new();
        let mut waits = 0;
        let mut reader = |_: RawFd, _: Instant| {
            waits += 1;
            drain(b.fd(), &mut got);
            Ok(())
        };
        out.send(&[&body], true, &mut reader).unwrap();
        assert!(waits > 0);
        assert!(out.take_held().0.is_empty());
        drain(b.fd(), &mut got);
        assert!(got.ends_with(&body));
        drop(hog);
        assert!(Parked::reserve(1).is_some());
    }
}
