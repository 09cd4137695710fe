//! Letting a large request body arrive before the app is called.
//!
//! Bodies up to `PREBUFFER` (64 KiB) are read into the connection's buffer from epoll
//! events before the app runs (src/server/conn.rs). A larger body, up to [`MAX_BODY`],
//! is given time to arrive in the kernel's socket buffer instead: `SO_RCVLOWAT` makes
//! epoll report the connection only once the whole body is queued, or once the client
//! has used up the receive window it was given (more comes only as we read). The app is
//! called at that next event. Then it reads, straight from the kernel into the `bytes`
//! it gets back, what has already arrived, and rarely waits on `wsgi.input`. Each such
//! wait costs a hand-over of the loop to another thread.
//!
//! Linux grows the receive buffer toward the low-water mark, up to `net.ipv4.tcp_rmem`'s
//! maximum, and the bytes that wait are the kernel's, bounded by its TCP memory limits;
//! ferrule holds none of them. A body slower than [`BODY_WAIT`], and any body on a
//! connection where `SO_RCVLOWAT` says nothing (TLS and unix sockets), streams to the
//! app as it arrives.

use std::os::fd::RawFd;
use std::time::Duration;

use super::clock::Tick;
use crate::net::socket;

/// How long a body may take to arrive before the app is called anyway.
pub const BODY_WAIT: Duration = Duration::from_secs(1);
/// Larger bodies stream to the app as they arrive.
pub const MAX_BODY: u64 = 16 << 20;

/// A connection's wait for a body.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum BodyWait {
    #[default]
    Idle,
    /// Parked with the low-water mark set, until this time.
    Waiting(Tick),
}

impl BodyWait {
    /// A body that has waited past [`BODY_WAIT`]: the sweep then serves the connection.
    pub fn expired(&self, now: Tick) -> bool {
        matches!(self, BodyWait::Waiting(until) if *until <= now)
    }
}

/// Whether to park a request that still has `remaining` body bytes to come
/// (`lowat`: the connection supports `SO_RCVLOWAT`). True means: wait for the next
/// event; the call then made for the same request returns false.
pub fn park(state: &mut BodyWait, fd: RawFd, lowat: bool, remaining: u64) -> bool {
    if let BodyWait::Waiting(_) = state {
        *state = BodyWait::Idle;
        let _ = socket::set_rcvlowat(fd, 1);
        return false;
    }
    if !lowat || remaining == 0 || remaining > MAX_BODY {
        return false;
    }
    let want = remaining as usize;
    if socket::set_rcvlowat(fd, want).is_err() {
        return false;
    }
    // Bytes that came before the mark was set raised no event: look once.
    if socket::queued(fd).map_or(true, |n| n >= want) {
        let _ = socket::set_rcvlowat(fd, 1);
        return false;
    }
    *state = BodyWait::Waiting(Tick::now() + BODY_WAIT);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn tcp_pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (client, server)
    }

    fn readable_within(fd: RawFd, ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, ms) > 0 }
    }

    #[test]
    fn parks_until_the_whole_body_is_queued_then_goes() {
        let (mut client, server) = tcp_pair();
        let fd = server.as_raw_fd();
        client.set_nodelay(true).unwrap();
        let mut state = BodyWait::Idle;
        assert!(park(&mut state, fd, true, 40_000));
        assert!(matches!(state, BodyWait::Waiting(_)));
        // Small segments, so that the receive window stays well open (a used-up window
        // also reports the socket readable).
        for _ in 0..20 {
            client.write_all(&[b'x'; 1000]).unwrap();
        }
        assert!(
            !readable_within(fd, 100),
            "half a body must not wake the loop"
        );
        for _ in 0..20 {
            client.write_all(&[b'x'; 1000]).unwrap();
        }
        assert!(readable_within(fd, 2000), "the whole body must");
        assert!(!park(&mut state, fd, true, 40_000));
        assert_eq!(state, BodyWait::Idle);
        // The mark is back at one byte: the next request's first byte wakes the loop.
        let mut sink = vec![0u8; 100_000];
        let mut got = 0;
        while got < 40_000 {
            match (&server).read(&mut sink) {
                Ok(n) => got += n,
                Err(_) => assert!(readable_within(fd, 2000)),
            }
        }
        client.write_all(b"G").unwrap();
        assert!(readable_within(fd, 2000));
    }

    #[test]
    fn goes_at_once_when_the_body_is_already_there() {
        let (mut client, server) = tcp_pair();
        client.write_all(&[b'x'; 70_000]).unwrap();
        assert!(readable_within(server.as_raw_fd(), 2000));
        std::thread::sleep(Duration::from_millis(50));
        let mut state = BodyWait::Idle;
        assert!(!park(&mut state, server.as_raw_fd(), true, 70_000));
        assert_eq!(state, BodyWait::Idle);
    }

    #[test]
    fn does_not_wait_without_the_signal_or_for_huge_bodies() {
        let (_client, server) = tcp_pair();
        let mut state = BodyWait::Idle;
        assert!(!park(&mut state, server.as_raw_fd(), false, 100_000));
        assert!(!park(&mut state, server.as_raw_fd(), true, MAX_BODY + 1));
        assert!(!park(&mut state, server.as_raw_fd(), true, 0));
        assert_eq!(state, BodyWait::Idle);
    }

    #[test]
    fn expires_after_the_wait() {
        let now = Tick::now();
        assert!(BodyWait::Waiting(now).expired(now));
        assert!(!BodyWait::Waiting(now + BODY_WAIT).expired(now));
        assert!(!BodyWait::Idle.expired(now));
    }
}
