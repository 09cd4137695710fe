//! One client connection: reading, parsing pipelined requests, and running each
//! exchange through the WSGI bridge.

use std::io;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyString;

use super::access::format::Record;
use super::body_wait::{self, BodyWait};
use super::clock::Tick;
use super::metrics;
use super::pool::{Shared, ThreadCtx};
use crate::http::date;
use crate::http::error::HttpError;
use crate::http::head::{self, Framing, Head};
use crate::http::{forwarded, proxy};
use crate::net::file_tail::Tail;
use crate::net::socket::{self, Socket};
use crate::static_files;
use crate::wsgi::app;
use crate::wsgi::bytes_tail::BytesTail;
use crate::wsgi::input::{blocking_wait as read_wait, BodyReader, InputStream};
use crate::wsgi::output::{Declared, Output, Parked};
use crate::wsgi::start_response::StartResponse;

/// Bodies up to this size are read completely before the app is called, without
/// holding a thread: the app then never blocks on them.
const PREBUFFER: u64 = 64 * 1024;
const READ_SIZE: usize = 16 * 1024;
/// A parked connection keeps a read buffer up to this size.
const IDLE_BUF_MAX: usize = 4096;
/// How long a closing connection reads and discards what the client still sends.
const LINGER: Duration = Duration::from_secs(2);
/// How much a closing connection discards before it gives up and closes anyway.
const LINGER_MAX: u64 = 16 << 20;

pub struct Conn {
    pub sock: Socket,
    pub listener: usize,
    pub remote_addr: Py<PyString>,
    pub remote_port: Py<PyString>,
    /// The client's IP address (after a PROXY header); `None` on a unix socket.
    pub peer_ip: Option<IpAddr>,
    /// A PROXY protocol header is expected before the first request.
    pub proxy_pending: bool,
    pub buf: Vec<u8>,
    pub pos: usize,
    /// The last read came back short: no more data until the next epoll edge.
    pub drained: bool,
    pub deadline: Option<Tick>,
    pub requests: u64,
    /// The peer sent its FIN: a short read no longer means "wait for the next edge".
    pub peer_closed: bool,
    /// A TCP connection: `SO_RCVLOWAT` tells when a body has arrived.
    pub lowat: bool,
    /// Waiting for a large body before calling the app (src/server/body_wait.rs).
    pub body_wait: BodyWait,
    /// Its epoll token (slot and generation).
    pub token: u64,
    /// A complete response held for the loop's next flush (src/server/deferred.rs), or
    /// the parked end of one the socket did not take (src/wsgi/output.rs); empty when
    /// nothing waits. `out[..out_pos]` went out already.
    pub out: Vec<u8>,
    out_pos: usize,
    /// `out`'s share of the parked-bytes budget.
    parked: Parked,
    /// The end of the app's last `bytes` object the socket did not take, sent after `out`
    /// as the socket drains.
    out_bytes: Option<BytesTail>,
    /// The end of a file (`--static`, or the app's `wsgi.file_wrapper`) the socket did
    /// not take, sent after `out` with sendfile as the socket drains.
    out_file: Option<Tail>,
    /// How the connection ends once `out` went out (a response that closes it, parked).
    after_out: Option<Ending>,
    /// Closing: our side is shut down and what the client still sends is discarded
    /// (`Some(bytes discarded)`); see [`linger`].
    pub lingering: Option<u64>,
}

/// What to do with a connection after serving it.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Wait for the next readiness event.
    Park,
    Close,
}

impl Conn {
    pub fn new(
        sock: Socket,
        listener: usize,
        remote_addr: Py<PyString>,
        remote_port: Py<PyString>,
        peer_ip: Option<IpAddr>,
    ) -> Conn {
        Conn {
            sock,
            listener,
            remote_addr,
            remote_port,
            peer_ip,
            proxy_pending: false,
            buf: Vec::new(),
            pos: 0,
            drained: false,
            deadline: None,
            requests: 0,
            peer_closed: false,
            lowat: false,
            body_wait: BodyWait::Idle,
            token: 0,
            out: Vec::new(),
            out_pos: 0,
            parked: Parked::default(),
            out_bytes: None,
            out_file: None,
            after_out: None,
            lingering: None,
        }
    }

    /// Whether part of a request has arrived (so a timeout is a 408, not an idle close).
    pub fn has_partial_request(&self) -> bool {
        self.lingering.is_none() && self.pos < self.buf.len()
    }

    /// Reads what the socket has. A read at the start of a request goes through the
    /// thread's `scratch` buffer and keeps only the bytes that arrived: a request
    /// usually comes whole in one read, so a connection holds a buffer the size of its
    /// requests, not 16 KiB (10,000 idle keep-alive connections cost little memory).
    fn fill(&mut self, scratch: &mut Vec<u8>) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.is_empty() {
            scratch.clear();
            scratch.reserve(READ_SIZE);
            let room = scratch.capacity();
            let r = socket::read_spare(self.sock.fd(), scratch);
            if let Ok(n) = r {
                self.drained = n < room && !self.peer_closed;
                self.buf.extend_from_slice(scratch);
            }
            return r;
        }
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 2 {
            self.buf.reserve(READ_SIZE);
        }
        let room = self.buf.capacity() - self.buf.len();
        let r = socket::read_spare(self.sock.fd(), &mut self.buf);
        if let Ok(n) = r {
            self.drained = n < room && !self.peer_closed;
        }
        r
    }

    /// Writes the held response without waiting: `Ok(true)` once it is all out,
    /// `Ok(false)` if the socket is full (the rest goes at its next writable event).
    pub fn write_out(&mut self) -> io::Result<bool> {
        while self.out_pos < self.out.len() {
            match socket::writev(self.sock.fd(), &[&self.out[self.out_pos..]]) {
                Ok(0) => {
                    self.drop_out();
                    return Err(io::ErrorKind::WriteZero.into());
                }
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => {
                    self.drop_out();
                    return Err(e);
                }
            }
        }
        self.out.clear();
        self.out_pos = 0;
        self.parked = Parked::default();
        if self.out.capacity() > IDLE_BUF_MAX {
            self.out = Vec::new();
        }
        if let Some(tail) = &mut self.out_bytes {
            match tail.resume(self.sock.fd()) {
                Ok(true) => self.out_bytes = None,
                Ok(false) => return Ok(false),
                Err(e) => {
                    self.drop_out();
                    return Err(e);
                }
            }
        }
        if let Some(tail) = &mut self.out_file {
            match tail.resume(self.sock.fd()) {
                Ok(true) => self.out_file = None,
                Ok(false) => return Ok(false),
                Err(e) => {
                    self.out_file = None;
                    return Err(e);
                }
            }
        }
        Ok(true)
    }

    /// Forgets what waited in `out`, `out_bytes` and `out_file` (its connection failed).
    fn drop_out(&mut self) {
        self.out = Vec::new();
        self.out_pos = 0;
        self.parked = Parked::default();
        self.out_bytes = None;
        self.out_file = None;
    }

    /// Whether response bytes wait for the socket to take them.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty() || self.out_bytes.is_some() || self.out_file.is_some()
    }

    /// How many response bytes wait for the socket.
    fn unsent(&self) -> u64 {
        (self.out.len() - self.out_pos) as u64
            + self.out_bytes.as_ref().map_or(0, BytesTail::left)
            + self.out_file.as_ref().map_or(0, Tail::left)
    }

    /// Gives back a large buffer an idle connection no longer needs (one grown by a
    /// big head or body).
    fn shrink_idle(&mut self) {
        if self.pos == self.buf.len() && self.buf.capacity() > IDLE_BUF_MAX {
            self.buf = Vec::new();
            self.pos = 0;
        }
    }
}

impl Drop for Conn {
    /// A held response still goes out, whichever way the connection closes.
    fn drop(&mut self) {
        if !self.out.is_empty() {
            let _ = self.write_out();
        }
    }
}

/// Writes a refusal for a bad request (best effort: the connection closes anyway).
pub fn refuse(conn: &Conn, err: &HttpError) {
    let resp = date::with_now(|d| err.response(d));
    let _ = socket::writev(conn.sock.fd(), &[&resp]);
}

/// Closes a connection whose client may still be sending (a refused request, a
/// body the app left unread). Closing a socket with unread input makes the kernel
/// send RST, which can destroy the response before the client reads it; so shut
/// down our side instead, and read and discard until the client closes, for at most
/// [`LINGER`] and [`LINGER_MAX`] bytes (nginx's lingering close).
fn linger(conn: &mut Conn) -> Next {
    socket::shutdown_write(conn.sock.fd());
    conn.lingering = Some(0);
    conn.deadline = Some(Tick::now() + LINGER);
    conn.buf.clear();
    conn.pos = 0;
    discard(conn)
}

fn discard(conn: &mut Conn) -> Next {
    let mut scratch = [0u8; 4096];
    loop {
        match socket::read(conn.sock.fd(), &mut scratch) {
            Ok(0) => return Next::Close,
            Ok(n) => {
                let seen = conn.lingering.unwrap_or(0) + n as u64;
                if seen > LINGER_MAX {
                    return Next::Close;
                }
                conn.lingering = Some(seen);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Park,
            Err(_) => return Next::Close,
        }
    }
}

/// Writes the response held for this connection (src/server/deferred.rs); what to do
/// with the connection if it could not all go out.
fn write_held(shared: &Shared, conn: &mut Conn) -> Option<Next> {
    if !conn.has_output() {
        return None;
    }
    let before = conn.unsent();
    match conn.write_out() {
        Ok(true) => None,
        Ok(false) => {
            // A client that stops reading is closed after `io_timeout` without progress
            // (bytes it sends meanwhile do not count).
            if conn.unsent() != before || conn.deadline.is_none() {
                conn.deadline = Some(Tick::now() + shared.cfg.io_timeout);
            }
            Some(Next::Park)
        }
        Err(_) => Some(Next::Close),
    }
}

/// Serves every complete request in the buffer, reading as needed.
pub fn serve(py: Python<'_>, shared: &Shared, ctx: &mut ThreadCtx, conn: &mut Conn) -> Next {
    if conn.lingering.is_some() {
        return discard(conn);
    }
    // A held or parked response goes before anything else on this connection.
    if let Some(next) = write_held(shared, conn) {
        return next;
    }
    match conn.after_out.take() {
        Some(Ending::Linger) => return linger(conn),
        Some(_) => return Next::Close,
        None => {}
    }
    let limits = shared.cfg.limits;
    loop {
        if conn.proxy_pending && conn.pos < conn.buf.len() && !take_proxy_header(py, shared, conn) {
            return Next::Close;
        }
        if conn.pos < conn.buf.len() && !conn.proxy_pending {
            // A pipelined request: the response held for the one before goes first.
            if let Some(next) = write_held(shared, conn) {
                return next;
            }
            let mut stack: [MaybeUninit<httparse::Header<'_>>; 128] =
                [const { MaybeUninit::uninit() }; 128];
            let mut heap: Vec<MaybeUninit<httparse::Header<'_>>>;
            let slots: &mut [MaybeUninit<httparse::Header<'_>>] = if limits.fields < stack.len() {
                &mut stack[..limits.fields + 1]
            } else {
                heap = vec![MaybeUninit::uninit(); limits.fields + 1];
                &mut heap
            };
            // A request under a `--static` mount, answered without the app.
            let mut answered = None;
            // The request waits for its body to arrive (src/server/body_wait.rs).
            let mut body_parked = false;
            let prepared = match head::parse(&conn.buf[conn.pos..], slots, &limits) {
                Err(e) => {
                    refuse(conn, &e);
                    shared.log_refusal(py, conn, &e);
                    return linger(conn);
                }
                Ok(Some(h)) => {
                    // The usual request has no forwarding headers: no call at all.
                    let client = match h.forwarded.then(|| proxied_client(shared, conn, &h)) {
                        None => None,
                        Some(Ok(client)) => client,
                        Some(Err(e)) => {
                            refuse(conn, &e);
                            shared.log_refusal(py, conn, &e);
                            return linger(conn);
                        }
                    };
                    let buffered = (conn.buf.len() - conn.pos - h.len) as u64;
                    let waiting_body = match h.framing {
                        Framing::Length(n) if n <= PREBUFFER && !h.expect_continue => buffered < n,
                        Framing::Length(n) if !h.expect_continue => {
                            body_parked = body_wait::park(
                                &mut conn.body_wait,
                                conn.sock.fd(),
                                conn.lowat,
                                n.saturating_sub(buffered),
                            );
                            body_parked
                        }
                        _ => false,
                    };
                    if waiting_body {
                        None
                    } else if let Some(a) = static_files::answer(py, shared, ctx, conn, &h) {
                        answered = Some(a);
                        None
                    } else {
                        let line = std::mem::take(&mut ctx.line);
                        Some(prepare(py, shared, conn, &h, line, client))
                    }
                }
                Ok(None) => None,
            };
            if body_parked {
                park_deadline(shared, conn);
                return Next::Park;
            }
            if let Some(a) = answered {
                conn.pos += a.consumed;
                conn.requests += 1;
                conn.deadline = None;
                conn.out_file = a.tail;
                match after_response(shared, conn, a.after) {
                    Some(next) => return next,
                    None => continue,
                }
            }
            match prepared {
                Some(Some(p)) => {
                    let ending = exchange(py, shared, ctx, conn, p);
                    conn.requests += 1;
                    conn.deadline = None;
                    match after_response(shared, conn, ending) {
                        Some(next) => return next,
                        None => continue,
                    }
                }
                Some(None) => return Next::Close,
                None => {}
            }
        }
        if conn.drained {
            park_deadline(shared, conn);
            return Next::Park;
        }
        match conn.fill(&mut ctx.scratch) {
            Ok(0) => return Next::Close,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.drained = true;
            }
            Err(_) => return Next::Close,
        }
    }
}

/// What follows a response on its connection: `None` to go on to the next request.
fn after_response(shared: &Shared, conn: &mut Conn, ending: Ending) -> Option<Next> {
    let more = ending == Ending::KeepAlive && !shared.is_stopping();
    if conn.has_output() && !more {
        // The parked end of the response goes out before the close.
        conn.after_out = Some(ending);
        conn.deadline = Some(Tick::now() + shared.cfg.io_timeout);
        return Some(Next::Park);
    }
    match ending {
        Ending::KeepAlive if more => None,
        Ending::Linger => Some(linger(conn)),
        _ => Some(Next::Close),
    }
}

/// Reads the PROXY protocol header once it is complete (`--proxy-protocol`); false if the
/// connection must close: a malformed header, or one from a peer that is not trusted.
fn take_proxy_header(py: Python<'_>, shared: &Shared, conn: &mut Conn) -> bool {
    let refuse = |why: &str| {
        let msg = format!(
            "Closed a connection from {}: {why}",
            conn.remote_addr.bind(py)
        );
        shared.loggers.log(py, "warning", &msg);
        false
    };
    if conn
        .peer_ip
        .is_some_and(|ip| !shared.cfg.forwarded_allow.contains(ip))
    {
        return refuse("a PROXY protocol header from a peer not in forwarded_allow_ips");
    }
    match proxy::parse(&conn.buf[conn.pos..]) {
        Ok(None) => true,
        Err(e) => refuse(e.0),
        Ok(Some((source, len))) => {
            conn.pos += len;
            conn.proxy_pending = false;
            if let proxy::Source::Client(addr) = source {
                conn.remote_addr = PyString::new(py, &addr.ip().to_string()).unbind();
                conn.remote_port = PyString::new(py, &addr.port().to_string()).unbind();
                conn.peer_ip = Some(addr.ip());
            }
            true
        }
    }
}

fn park_deadline(shared: &Shared, conn: &mut Conn) {
    conn.shrink_idle();
    if conn.deadline.is_some() {
        return;
    }
    let wait = if conn.has_output() {
        shared.cfg.io_timeout
    } else if conn.has_partial_request() || conn.requests == 0 {
        shared.cfg.header_timeout
    } else {
        shared.cfg.keep_alive
    };
    conn.deadline = Some(Tick::now() + wait);
}

/// Writes `METHOD target HTTP/1.x` into `buf` (kept for logs).
fn request_line(h: &Head<'_, '_>, mut buf: String) -> String {
    buf.clear();
    buf.push_str(h.method);
    buf.push(' ');
    buf.push_str(h.target);
    buf.push_str(if h.http11 { " HTTP/1.1" } else { " HTTP/1.0" });
    buf
}

fn header<'b>(h: &Head<'_, 'b>, name: &str) -> Option<&'b [u8]> {
    h.headers
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(name))
        .map(|f| f.value)
}

/// What the exchange needs from the parsed head, owned (the head borrows the buffer).
struct Prepared<'py> {
    environ: Bound<'py, pyo3::types::PyDict>,
    line: String,
    access: Option<Captured<'py>>,
    framing: Framing,
    head_only: bool,
    http11: bool,
    keep_alive: bool,
    expect_continue: bool,
    head_len: usize,
    /// With metrics: when the request was admitted ([`metrics::now_ns`]), and its method.
    metered: Option<(u64, usize)>,
}

/// What the access-log line needs from the request, taken before the app runs.
struct Captured<'py> {
    start: Instant,
    /// The client's address from a trusted proxy's headers.
    client: Option<String>,
    /// Values of the format's request headers, in its order.
    headers: Vec<Option<Vec<u8>>>,
    environ: Option<Bound<'py, pyo3::types::PyDict>>,
}

/// What a trusted proxy's `Forwarded` / `X-Forwarded-*` headers say about the client:
/// `None` from a peer not in `forwarded_allow_ips` or without such headers, an error when
/// they disagree on the scheme. Peers on a unix socket are trusted (only a local proxy can
/// reach one), as in gunicorn.
pub fn proxied_client(
    shared: &Shared,
    conn: &Conn,
    h: &Head<'_, '_>,
) -> Result<Option<forwarded::Client>, HttpError> {
    let trusted = &shared.cfg.forwarded_allow;
    if !h.forwarded || trusted.is_empty() || conn.peer_ip.is_some_and(|ip| !trusted.contains(ip)) {
        return Ok(None);
    }
    forwarded::client(h.headers.iter().map(|f| (f.name, f.value)), trusted)
}

/// Applies what a trusted proxy said about the client ([`proxied_client`]) to `REMOTE_ADDR`
/// and `wsgi.url_scheme`; returns the client address it set.
fn forwarded(
    py: Python<'_>,
    client: Option<forwarded::Client>,
    environ: &Bound<'_, pyo3::types::PyDict>,
) -> PyResult<Option<String>> {
    let Some(client) = client else {
        return Ok(None);
    };
    if let Some(scheme) = client.scheme {
        environ.set_item(pyo3::intern!(py, "wsgi.url_scheme"), scheme)?;
    }
    let Some(ip) = client.addr else {
        return Ok(None);
    };
    let ip = ip.to_string();
    environ.set_item(pyo3::intern!(py, "REMOTE_ADDR"), &ip)?;
    Ok(Some(ip))
}

/// Builds the environ and copies what the exchange needs; `None` if it failed (logged).
fn prepare<'py>(
    py: Python<'py>,
    shared: &Shared,
    conn: &Conn,
    h: &Head<'_, '_>,
    line: String,
    client: Option<forwarded::Client>,
) -> Option<Prepared<'py>> {
    shared.admit();
    let remote_addr = conn.remote_addr.bind(py);
    let remote_port = conn.remote_port.bind(py);
    let built = shared
        .environ
        .build(py, conn.listener, h, remote_addr, remote_port)
        .and_then(|env| Ok((forwarded(py, client, &env)?, env)));
    let (client, environ) = match built {
        Ok(e) => e,
        Err(e) => {
            shared
                .loggers
                .exception(py, "Could not build the WSGI environ", &e);
            let err = HttpError::BadRequest("could not decode request");
            refuse(conn, &err);
            if let Some(m) = &shared.metrics {
                m.refused_parsed(metrics::method_index(h.method.as_bytes()), err.status());
            }
            return None;
        }
    };
    Some(Prepared {
        line: request_line(h, line),
        access: shared.access.as_ref().map(|a| Captured {
            start: Instant::now(),
            client,
            headers: (a.format.request_headers().iter())
                .map(|name| header(h, name).map(<[u8]>::to_vec))
                .collect(),
            environ: a.format.needs_environ().then(|| environ.clone()),
        }),
        environ,
        framing: h.framing,
        head_only: h.method == "HEAD",
        http11: h.http11,
        // keep_alive = 0 means one request per connection.
        keep_alive: h.keep_alive && !shared.cfg.keep_alive.is_zero() && !shared.is_stopping(),
        expect_continue: h.expect_continue,
        head_len: h.len,
        metered: shared.metrics.as_ref().map(|m| {
            m.begin();
            (
                metrics::now_ns(),
                metrics::method_index(h.method.as_bytes()),
            )
        }),
    })
}

/// How an exchange (the app's or a static file's) left the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    KeepAlive,
    Close,
    /// Close, but the client may still be sending: see [`linger`].
    Linger,
}

/// Runs one request through the app.
fn exchange(
    py: Python<'_>,
    shared: &Shared,
    ctx: &mut ThreadCtx,
    conn: &mut Conn,
    p: Prepared<'_>,
) -> Ending {
    let Prepared {
        environ,
        line,
        access,
        framing,
        head_only,
        http11,
        keep_alive,
        expect_continue,
        head_len,
        metered,
    } = p;
    // Ends the request's metrics (a few relaxed atomic adds).
    let metered_end = |status: u16| {
        if let (Some(m), Some((start, method))) = (&shared.metrics, metered) {
            m.finish_since(method, status, start);
        }
    };
    conn.pos += head_len;
    let fd = conn.sock.fd();
    let cfg = &shared.cfg;
    // Without a body, `wsgi.input` is the template's shared empty stream.
    let (input, body) = if framing == Framing::Empty {
        (None, None)
    } else {
        let buf = std::mem::take(&mut conn.buf);
        let reader = BodyReader::new(
            fd,
            buf,
            conn.pos,
            framing,
            &cfg.limits,
            expect_continue,
            cfg.io_timeout,
        );
        let body = reader.state();
        (Some(InputStream::new(reader)), Some(body))
    };
    let made = (|| {
        let input = match input {
            Some(input) => {
                let input = Py::new(py, input)?;
                environ.set_item(pyo3::intern!(py, "wsgi.input"), &input)?;
                Some(input)
            }
            None => None,
        };
        let mut out = Output::new(fd, http11, head_only, keep_alive, cfg.io_timeout, body);
        out.defer = keep_alive && ctx.more_ready;
        if conn.out.is_empty() {
            // Flushed: its allocation takes the next held response.
            out.hold_in(std::mem::take(&mut conn.out));
        }
        let sr = match ctx.spare_start_response.take() {
            Some(sr) => {
                sr.get().reuse(out)?;
                sr
            }
            None => StartResponse::create(py, out, ctx.on_write.clone())?,
        };
        Ok((input, sr))
    })();
    let (input, sr) = match made {
        Ok(v) => v,
        Err(e) => {
            shared
                .loggers
                .exception(py, "Could not set up the request", &e);
            metered_end(500);
            return Ending::Close;
        }
    };

    ctx.enter_app(shared, &line);
    let mut marked = None;
    let outcome = app::run(
        py,
        shared.app.bind(py),
        environ,
        sr.bind(py),
        &shared.loggers,
        &line,
        &mut || ctx.progressed(shared, &line, &mut marked),
    );
    ctx.leave_app(shared);
    metered_end(outcome.status);

    // Take the buffer back, finishing the body if the app left some of it unread.
    let mut keep = outcome.keep_alive;
    // The client may still be sending: a pipelined request, or body bytes.
    let mut unread = keep_alive;
    if let Some(mut reader) = input.and_then(|input| input.get().take()) {
        if keep && !reader.is_done() {
            let mut block = read_wait(py);
            keep = reader.drain(&mut block);
        }
        unread |= !reader.is_done();
        if let Some(why) = &reader.failed {
            shared.loggers.log(py, "info", &format!("{line}: {why}"));
            keep = false;
            unread = true;
        }
        reader.detach();
        let (buf, pos) = reader.into_buffer();
        conn.buf = buf;
        conn.pos = pos;
    }
    // A complete response the writer held, or the end of one the socket did not take
    // (parked). A held one waits for the loop's next flush when other ready work comes
    // first; else (nothing queued, the connection closes now, or this thread stopped
    // leading and goes idle next) it goes out now, as far as the socket takes it. What
    // the socket does not take waits in the connection for its next writable event, as
    // does the end of a file the socket did not take (the socket is full now).
    conn.out_bytes = outcome.bytes_tail;
    conn.out_file = outcome.file_tail;
    if !outcome.held.is_empty() {
        let leading = shared
            .pool
            .leader
            .load(std::sync::atomic::Ordering::Acquire)
            == ctx.index;
        conn.out = outcome.held;
        conn.parked = outcome.parked;
        if keep && ctx.more_ready && leading {
            shared.deferred.push(conn.token);
        } else if conn.write_out().is_err() {
            keep = false;
        }
    }
    if let (Some(log), Some(cap)) = (&shared.access, access) {
        let remote = conn.remote_addr.bind(py);
        let sr = sr.get();
        let output = sr.output().ok();
        let declared = output.as_ref().and_then(|o| o.declared.as_ref());
        let time = log.now();
        let rec = Record {
            remote: match &cap.client {
                Some(client) => client,
                None => remote.to_str().unwrap_or("-"),
            },
            line: &line,
            status: outcome.status,
            bytes: outcome.bytes,
            elapsed: cap.start.elapsed(),
            request_headers: &cap.headers,
            response_headers: declared.map_or(&[][..], Declared::headers),
            environ: cap.environ.as_ref(),
            time: &time,
            pid: std::process::id(),
        };
        log.write(py, &shared.loggers, &rec);
    }
    ctx.line = line;
    // SAFETY: reading the reference count of an object we hold a reference to.
    if unsafe { pyo3::ffi::Py_REFCNT(sr.as_ptr()) } == 1 {
        // Nothing else holds it (the app kept neither it nor its write()).
        ctx.spare_start_response = Some(sr);
    }
    if keep {
        Ending::KeepAlive
    } else if unread {
        Ending::Linger
    } else {
        Ending::Close
    }
}
