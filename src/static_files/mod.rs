//! Static files (`--static /url=dir`), answered by the core before any Python runs.
//!
//! - [`mount`]: the mount table and matching a request-target against it;
//! - [`path`]: safe resolution of the path under a mount's root (traversal, symlinks);
//! - [`conditional`]: ETag, Last-Modified and the preconditions (304, 412);
//! - [`range`]: the `Range` header (206, 416);
//! - [`response`]: response heads and content types;
//! - [`send`]: writing the head and the body (sendfile).
//!
//! A request whose percent-decoded path is under a mount prefix is answered here and
//! never reaches the app: GET and HEAD get the file; another method gets 405; a path naming
//! no regular file (missing, a directory, refused for traversal) gets 404. Directory
//! indexes and listings are not served. [`answer`] is the hook the connection loop calls for
//! every request; with no mount configured it costs one branch.

pub mod conditional;
pub mod mount;
pub mod path;
pub mod range;
pub mod response;
pub mod send;

use std::fs::File;
use std::os::fd::RawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;

pub use mount::{Mount, Mounts};

use crate::http::head::{Framing, Head as RequestHead};
use crate::net::file_tail::Tail;
use crate::net::socket::{self, Interest};
use crate::server::access::format::Record;
use crate::server::clock::Tick;
use crate::server::conn::{self, Conn, Ending};
use crate::server::metrics;
use crate::server::pool::{Shared, ThreadCtx};
use conditional::{Decision, Validators};
use range::Range;
use response::Head;
use send::{Block, Body, Progress, Sent};

/// A request for a static file, as [`respond`] needs it.
pub struct Request<'a> {
    pub method: &'a str,
    /// The raw path after the mount prefix (`/css/site.css`), before the query.
    pub rest: &'a [u8],
    pub headers: &'a [httparse::Header<'a>],
    pub http11: bool,
    /// The connection may carry another request after this one.
    pub keep_alive: bool,
}

/// How a static response went.
#[derive(Debug)]
pub struct Outcome {
    pub status: u16,
    /// Body bytes sent (0 for HEAD and 304).
    pub bytes: u64,
    /// The header lines sent (for the access log's `{name}o` atoms).
    pub lines: Vec<u8>,
    /// The connection can carry another request.
    pub keep_alive: bool,
    /// The end of the file, parked for the connection to send (see [`send`]).
    pub tail: Option<Tail>,
}

/// What follows a head.
enum Payload {
    Empty,
    Text(String),
    File { file: File, offset: u64, len: u64 },
}

fn error(code: u16) -> (Head, Payload) {
    let body = response::error_body(code);
    let mut head = Head::new(code);
    head.field("Content-Type", b"text/plain; charset=utf-8")
        .number("Content-Length", body.len() as u64);
    if code == 405 {
        head.field("Allow", b"GET, HEAD");
    }
    (head, Payload::Text(body))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Decides the response: its head and what follows it.
fn plan(mount: &Mount, cache_control: Option<&[u8]>, req: &Request<'_>) -> (Head, Payload) {
    let get = req.method == "GET";
    if !get && req.method != "HEAD" {
        return error(405);
    }
    let rel = match path::relative(req.rest) {
        Ok(rel) => rel,
        Err(path::Refusal::BadRequest) => return error(400),
        Err(path::Refusal::NotFound) => return error(404),
    };
    let (file, meta) = match path::open(&mount.root, &rel) {
        Ok(f) => f,
        Err(_) => return error(404),
    };
    let v = Validators::new(&meta, now_secs());
    let tag = v.tag();
    let validators = |head: &mut Head| {
        let mut etag = Vec::with_capacity(tag.len() + 2);
        etag.push(b'"');
        etag.extend_from_slice(tag.as_bytes());
        etag.push(b'"');
        head.field("ETag", &etag)
            .date("Last-Modified", v.last_modified);
        if let Some(cc) = cache_control {
            head.field("Cache-Control", cc);
        }
    };
    match conditional::evaluate(req.headers, tag.as_bytes(), v.last_modified) {
        Decision::Proceed => {}
        Decision::Failed => return error(412),
        Decision::NotModified => {
            let mut head = Head::new(304);
            validators(&mut head);
            return (head, Payload::Empty);
        }
    }
    // Range applies to GET only (RFC 9110 §14.2); one Range field, and If-Range holding.
    let size = v.size;
    let mut ranges = conditional::values(req.headers, "range");
    let range = match (get, ranges.next(), ranges.next()) {
        (true, Some(value), None) => match conditional::first(req.headers, "if-range") {
            Some(ir) if !conditional::if_range_holds(ir, tag.as_bytes(), v.last_modified) => {
                Range::Full
            }
            _ => range::parse(value, size),
        },
        _ => Range::Full,
    };
    let content_type = response::content_type(&rel);
    match range {
        Range::Unsatisfiable => {
            let (mut head, body) = error(416);
            let mut cr = b"bytes */".to_vec();
            cr.extend_from_slice(itoa::Buffer::new().format(size).as_bytes());
            head.field("Content-Range", &cr);
            (head, body)
        }
        Range::Part { start, end } => {
            let len = end - start + 1;
            let mut head = Head::new(206);
            let mut cr = Vec::with_capacity(64);
            cr.extend_from_slice(b"bytes ");
            cr.extend_from_slice(itoa::Buffer::new().format(start).as_bytes());
            cr.push(b'-');
            cr.extend_from_slice(itoa::Buffer::new().format(end).as_bytes());
            cr.push(b'/');
            cr.extend_from_slice(itoa::Buffer::new().format(size).as_bytes());
            head.field("Content-Type", &content_type)
                .number("Content-Length", len)
                .field("Content-Range", &cr)
                .field("Accept-Ranges", b"bytes");
            validators(&mut head);
            (
                head,
                Payload::File {
                    file,
                    offset: start,
                    len,
                },
            )
        }
        Range::Full => {
            let mut head = Head::new(200);
            head.field("Content-Type", &content_type)
                .number("Content-Length", size)
                .field("Accept-Ranges", b"bytes");
            validators(&mut head);
            (
                head,
                Payload::File {
                    file,
                    offset: 0,
                    len: size,
                },
            )
        }
    }
}

/// Answers one static request on `fd`, waiting for a slow client through `block` unless
/// `park` lets the end of the file come back as [`Outcome::tail`]; `progress` is called as
/// parts of a file body go out.
#[allow(clippy::too_many_arguments)]
pub fn respond(
    mount: &Mount,
    cache_control: Option<&[u8]>,
    req: &Request<'_>,
    fd: RawFd,
    timeout: Duration,
    block: &mut Block<'_>,
    progress: &mut Progress<'_>,
    park: bool,
) -> Outcome {
    let (head, payload) = plan(mount, cache_control, req);
    let encoded = head.encode(req.http11, req.keep_alive);
    let body = match payload {
        _ if req.method == "HEAD" => Body::None,
        Payload::Empty => Body::None,
        Payload::Text(ref t) => Body::Bytes(t.as_bytes()),
        Payload::File { file, offset, len } => Body::File { file, offset, len },
    };
    let Sent {
        bytes,
        complete,
        tail,
    } = send::send(fd, &encoded, body, timeout, block, progress, park);
    Outcome {
        status: head.code,
        bytes,
        lines: head.lines,
        keep_alive: req.keep_alive && complete,
        tail,
    }
}

/// A request answered here: the bytes of the buffer it used, what comes next, and the end
/// of the file if the socket did not take it all (the connection sends it as it drains).
#[derive(Debug)]
pub struct Answered {
    pub consumed: usize,
    pub after: Ending,
    pub tail: Option<Tail>,
}

/// The connection loop's hook, called with every parsed request (its body, when small, is
/// already in the buffer): `None` when the request is not under a mount (the app gets it).
#[inline]
pub fn answer(
    py: Python<'_>,
    shared: &Shared,
    ctx: &mut ThreadCtx,
    conn: &Conn,
    h: &RequestHead<'_, '_>,
) -> Option<Answered> {
    let mounts = &shared.cfg.static_files;
    if mounts.is_empty() {
        return None;
    }
    let (mount, rest) = mounts.find(h.target.as_bytes())?;
    Some(exchange(py, shared, ctx, conn, h, mount, rest))
}

/// `METHOD target HTTP/1.x`, for the log.
fn request_line(h: &RequestHead<'_, '_>, buf: &mut String) {
    buf.clear();
    buf.push_str(h.method);
    buf.push(' ');
    buf.push_str(h.target);
    buf.push_str(if h.http11 { " HTTP/1.1" } else { " HTTP/1.0" });
}

/// One static exchange: the response written with the GIL released (file system calls,
/// sendfile, waiting until a slow client has taken part of the file), then the metrics and
/// the access-log line. The end of a file the socket does not take is parked in the
/// connection ([`Answered::tail`]); the log line then counts its bytes as sent, and its
/// time ends where the thread let go, as for a response the app returned whole
/// (src/wsgi/output.rs).
#[inline(never)]
fn exchange(
    py: Python<'_>,
    shared: &Shared,
    ctx: &mut ThreadCtx,
    conn: &Conn,
    h: &RequestHead<'_, '_>,
    mount: &Mount,
    rest: &[u8],
) -> Answered {
    let start = Instant::now();
    shared.admit();
    if let Some(m) = &shared.metrics {
        m.begin();
    }
    // A body small enough to be in the buffer already is skipped; any other (chunked,
    // large, or waiting for 100 Continue, which is never sent here) stays unread, and the
    // connection closes after the response, lingering.
    let in_buffer = conn.buf.len().saturating_sub(conn.pos + h.len) as u64;
    let (consumed, body_unread) = match h.framing {
        Framing::Empty => (h.len, false),
        Framing::Length(n) if !h.expect_continue && n <= in_buffer => (h.len + n as usize, false),
        _ => (h.len, true),
    };
    let wanted = h.keep_alive && !shared.cfg.keep_alive.is_zero() && !shared.is_stopping();
    let req = Request {
        method: h.method,
        rest,
        headers: h.headers,
        http11: h.http11,
        keep_alive: wanted && !body_unread,
    };
    let mut line = std::mem::take(&mut ctx.line);
    request_line(h, &mut line);
    let fd = conn.sock.fd();
    let timeout = shared.cfg.io_timeout;
    let cache_control = shared.cfg.static_files.cache_control.as_deref();

    // Seen by the watcher like an app call: a thread waiting for a slow reader or the disk
    // hands the loop to another thread. A long download that keeps making progress is
    // re-entered (a new exchange number) every `PROGRESS_MARK`, so the heartbeat does not
    // report it as one request stuck past `worker_timeout`; a stalled one ends at
    // `io_timeout`.
    ctx.enter_app(shared, &line);
    let outcome = py.detach(|| {
        let mut block =
            |fd: RawFd, deadline: Instant| socket::wait(fd, Interest::Write, Some(deadline));
        let mut marked = Some(Tick::now());
        let mut progress = || ctx.progressed(shared, &line, &mut marked);
        respond(
            mount,
            cache_control,
            &req,
            fd,
            timeout,
            &mut block,
            &mut progress,
            true,
        )
    });
    ctx.leave_app(shared);
    if let Some(m) = &shared.metrics {
        let method = metrics::method_index(h.method.as_bytes());
        m.finish(method, outcome.status, start.elapsed());
    }

    if let Some(log) = &shared.access {
        // Headers that disagree were refused before the request got here.
        let client = (conn::proxied_client(shared, conn, h).ok().flatten())
            .and_then(|c| c.addr)
            .map(|ip| ip.to_string());
        let remote = conn.remote_addr.bind(py);
        let headers: Vec<Option<Vec<u8>>> = (log.format.request_headers().iter())
            .map(|name| conditional::first(h.headers, name).map(<[u8]>::to_vec))
            .collect();
        let time = log.now();
        let rec = Record {
            remote: match &client {
                Some(c) => c,
                None => remote.to_str().unwrap_or("-"),
            },
            line: &line,
            status: outcome.status,
            bytes: outcome.bytes,
            elapsed: start.elapsed(),
            request_headers: &headers,
            response_headers: &outcome.lines,
            environ: None,
            time: &time,
            pid: std::process::id(),
        };
        log.write(py, &shared.loggers, &rec);
    }
    ctx.line = line;
    let after = if outcome.keep_alive {
        Ending::KeepAlive
    } else if wanted || body_unread {
        Ending::Linger
    } else {
        Ending::Close
    };
    Answered {
        consumed,
        after,
        tail: outcome.tail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::path::PathBuf;

    struct Fixture {
        base: PathBuf,
        mount: Mount,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }

    fn fixture(name: &str) -> Fixture {
        let base =
            std::env::temp_dir().join(format!("ferrule-static-{}-{name}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("dir")).unwrap();
        std::fs::write(root.join("hello.txt"), b"hello, world\n").unwrap();
        std::fs::write(root.join("empty.css"), b"").unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        Fixture {
            base,
            mount: Mount {
                prefix: b"/static".to_vec(),
                root,
            },
        }
    }

    /// Runs `respond` over a socket pair; returns the outcome and the raw response.
    fn run(f: &Fixture, method: &str, rest: &str, fields: &[(&str, &str)]) -> (Outcome, String) {
        let headers: Vec<httparse::Header<'_>> = fields
            .iter()
            .map(|(name, value)| httparse::Header {
                name,
                value: value.as_bytes(),
            })
            .collect();
        let req = Request {
            method,
            rest: rest.as_bytes(),
            headers: &headers,
            http11: true,
            keep_alive: true,
        };
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut block = |fd: RawFd, d: Instant| socket::wait(fd, Interest::Write, Some(d));
        let out = respond(
            &f.mount,
            Some(b"public, max-age=60"),
            &req,
            ours.as_raw_fd(),
            Duration::from_secs(5),
            &mut block,
            &mut || {},
            false,
        );
        drop(ours);
        let mut raw = String::new();
        theirs.read_to_string(&mut raw).unwrap();
        (out, raw)
    }

    fn header<'r>(raw: &'r str, name: &str) -> Option<&'r str> {
        let head = raw.split("\r\n\r\n").next()?;
        head.lines()
            .filter_map(|l| l.split_once(": "))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    #[test]
    fn get_head_and_errors() {
        let f = fixture("basic");
        let (out, raw) = run(&f, "GET", "/hello.txt", &[]);
        assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
        assert!(raw.ends_with("\r\n\r\nhello, world\n"));
        assert_eq!(
            header(&raw, "Content-Type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(header(&raw, "Content-Length"), Some("13"));
        assert_eq!(header(&raw, "Cache-Control"), Some("public, max-age=60"));
        assert_eq!(header(&raw, "Accept-Ranges"), Some("bytes"));
        assert!(header(&raw, "ETag").is_some_and(|e| e.starts_with('"')));
        assert!(header(&raw, "Last-Modified").is_some());
        assert_eq!((out.status, out.bytes, out.keep_alive), (200, 13, true));

        let (out, raw) = run(&f, "HEAD", "/hello.txt", &[]);
        assert!(raw.ends_with("\r\n\r\n"));
        assert_eq!(header(&raw, "Content-Length"), Some("13"));
        assert_eq!((out.status, out.bytes), (200, 0));

        let (out, raw) = run(&f, "GET", "/empty.css", &[]);
        assert_eq!(header(&raw, "Content-Length"), Some("0"));
        assert_eq!((out.status, out.bytes), (200, 0));

        for (method, rest, code) in [
            ("POST", "/hello.txt", 405),
            ("GET", "/missing", 404),
            ("GET", "/dir", 404),
            ("GET", "/", 404),
            ("GET", "/../root/hello.txt", 404),
            ("GET", "/%zz", 400),
        ] {
            let (out, raw) = run(&f, method, rest, &[]);
            assert_eq!(out.status, code, "{method} {rest}");
            assert!(raw.starts_with(&format!("HTTP/1.1 {code} ")), "{raw}");
            assert!(out.keep_alive);
        }
        let (_, raw) = run(&f, "DELETE", "/hello.txt", &[]);
        assert_eq!(header(&raw, "Allow"), Some("GET, HEAD"));
    }

    #[test]
    fn conditional_and_ranges() {
        let f = fixture("cond");
        let (_, raw) = run(&f, "GET", "/hello.txt", &[]);
        let etag = header(&raw, "ETag").unwrap().to_string();
        let lm = header(&raw, "Last-Modified").unwrap().to_string();

        let (out, raw) = run(&f, "GET", "/hello.txt", &[("If-None-Match", &etag)]);
        assert_eq!((out.status, out.bytes), (304, 0));
        assert!(raw.ends_with("\r\n\r\n"));
        assert_eq!(header(&raw, "ETag"), Some(etag.as_str()));
        assert_eq!(header(&raw, "Cache-Control"), Some("public, max-age=60"));
        assert_eq!(header(&raw, "Content-Length"), None);
        let (out, _) = run(&f, "GET", "/hello.txt", &[("If-Modified-Since", &lm)]);
        assert_eq!(out.status, 304);
        let (out, _) = run(&f, "GET", "/hello.txt", &[("If-Match", "\"other\"")]);
        assert_eq!(out.status, 412);

        let (out, raw) = run(&f, "GET", "/hello.txt", &[("Range", "bytes=7-11")]);
        assert_eq!((out.status, out.bytes), (206, 5));
        assert!(raw.ends_with("\r\n\r\nworld"));
        assert_eq!(header(&raw, "Content-Range"), Some("bytes 7-11/13"));
        let (out, raw) = run(&f, "GET", "/hello.txt", &[("Range", "bytes=-6")]);
        assert_eq!(out.status, 206);
        assert!(raw.ends_with("world\n"));
        let (out, raw) = run(&f, "GET", "/hello.txt", &[("Range", "bytes=13-")]);
        assert_eq!(out.status, 416);
        assert_eq!(header(&raw, "Content-Range"), Some("bytes */13"));
        let (out, _) = run(&f, "HEAD", "/hello.txt", &[("Range", "bytes=0-1")]);
        assert_eq!(out.status, 200);
        let (out, _) = run(
            &f,
            "GET",
            "/hello.txt",
            &[("Range", "bytes=0-1"), ("If-Range", &etag)],
        );
        assert_eq!(out.status, 206);
        let (out, _) = run(
            &f,
            "GET",
            "/hello.txt",
            &[("Range", "bytes=0-1"), ("If-Range", "\"old\"")],
        );
        assert_eq!(out.status, 200);
        let (out, _) = run(
            &f,
            "GET",
            "/hello.txt",
            &[("Range", "bytes=0-1"), ("If-Range", &lm)],
        );
        assert_eq!(out.status, 206);
        let (out, _) = run(&f, "GET", "/hello.txt", &[("Range", "bytes=0-1,3-4")]);
        assert_eq!((out.status, out.bytes), (200, 13));
    }
}
