//! The no-Python floor of the hello workload: a single-threaded epoll loop that parses each
//! request with httparse and answers it with the bytes ferrule sends for `hello:app`
//! (Server, Date, Content-Type, Content-Length, "Hello, World!"). No Python, no WSGI, no
//! timeouts, no limits: it is not a server, only the least CPU a request can cost on this
//! machine through the same socket calls (one `recv`, one `send` per request and an
//! `epoll_wait` when there is nothing left to do).
//!
//!     cargo build --release --example floor_server
//!     EXTRA_NAME=floor EXTRA_CMD="target/release/examples/floor_server 127.0.0.1:18080" \
//!         ORDER="floor ferrule fastwsgi bjoern" ../shared/bench/peers.sh hello / 5 50
//!
//! docs/benchmarks.md compares ferrule's CPU per request with it.

use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};

const BODY: &[u8] = b"Hello, World!";
const LISTENER: u64 = u64::MAX;

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The `Date` value for `secs` since the epoch (RFC 9110 IMF-fixdate), from the C library
/// (this program never sets a locale, so names are English).
fn http_date(secs: u64) -> String {
    let t = secs as libc::time_t;
    // SAFETY: gmtime_r fills the tm on our stack; strftime writes at most buf.len() bytes.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::gmtime_r(&t, &mut tm);
        let mut buf = [0u8; 64];
        let n = libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c"%a, %d %b %Y %H:%M:%S GMT".as_ptr(),
            &tm,
        );
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

struct Answer {
    secs: u64,
    bytes: Vec<u8>,
}

impl Answer {
    fn current(&mut self) -> &[u8] {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec on our stack.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
        let secs = ts.tv_sec as u64;
        if secs != self.secs || self.bytes.is_empty() {
            self.secs = secs;
            self.bytes = format!(
                "HTTP/1.1 200 OK\r\nServer: floor\r\nDate: {}\r\nContent-Type: text/plain\r\n\
                 Content-Length: {}\r\n\r\n",
                http_date(secs),
                BODY.len()
            )
            .into_bytes();
            self.bytes.extend_from_slice(BODY);
        }
        &self.bytes
    }
}

#[derive(Default)]
struct Conn {
    input: Vec<u8>,
    output: Vec<u8>,
}

/// Reads what `fd` has, answers every complete request in it and sends the answers in one
/// call. Returns false when the connection is done.
fn serve(fd: RawFd, conn: &mut Conn, answer: &mut Answer) -> bool {
    let mut buf = [0u8; 16 * 1024];
    loop {
        // SAFETY: recv writes at most buf.len() bytes into buf.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n == 0 {
            return false;
        }
        if n < 0 {
            if io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                return false;
            }
            break;
        }
        let n = n as usize;
        conn.input.extend_from_slice(&buf[..n]);
        if n < buf.len() {
            break;
        }
    }
    let mut used = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&conn.input[used..]) {
            Ok(httparse::Status::Complete(len)) => {
                used += len;
                conn.output.extend_from_slice(answer.current());
            }
            Ok(httparse::Status::Partial) => break,
            Err(_) => return false,
        }
    }
    conn.input.drain(..used);
    flush(fd, conn)
}

fn flush(fd: RawFd, conn: &mut Conn) -> bool {
    while !conn.output.is_empty() {
        // SAFETY: send reads at most output.len() bytes from output.
        let n = unsafe {
            libc::send(
                fd,
                conn.output.as_ptr().cast(),
                conn.output.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            return io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock;
        }
        conn.output.drain(..n as usize);
    }
    true
}

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".into());
    let listener = TcpListener::bind(&addr)?;
    listener.set_nonblocking(true)?;
    let lfd = listener.as_raw_fd();
    // SAFETY: plain epoll calls on descriptors this process owns.
    let ep = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: LISTENER,
    };
    check(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, lfd, &mut ev) })?;
    let mut conns: HashMap<RawFd, Conn> = HashMap::new();
    let mut answer = Answer {
        secs: 0,
        bytes: Vec::new(),
    };
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    eprintln!("floor_server: listening on {addr}");
    loop {
        // SAFETY: events has room for its length.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, -1) };
        for e in events.iter().take(n.max(0) as usize) {
            let token = e.u64;
            if token == LISTENER {
                while let Ok((sock, _)) = listener.accept() {
                    let _ = sock.set_nonblocking(true);
                    let _ = sock.set_nodelay(true);
                    let fd = sock.into_raw_fd();
                    let mut ev = libc::epoll_event {
                        events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET)
                            as u32,
                        u64: fd as u64,
                    };
                    // SAFETY: registering a descriptor we own.
                    if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } == 0 {
                        conns.insert(fd, Conn::default());
                    } else {
                        // SAFETY: closing a descriptor we own.
                        unsafe { libc::close(fd) };
                    }
                }
                continue;
            }
            let fd = token as RawFd;
            let alive = match conns.get_mut(&fd) {
                Some(conn) if e.events & libc::EPOLLIN as u32 != 0 => serve(fd, conn, &mut answer),
                Some(conn) => flush(fd, conn),
                None => continue,
            };
            if !alive || e.events & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                conns.remove(&fd);
                // SAFETY: closing a descriptor we own; epoll forgets it with it.
                unsafe { libc::close(fd) };
            }
        }
    }
}
