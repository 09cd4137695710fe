//! Writing a static response: the head, then the body from the file with sendfile(2).
//!
//! The head goes out with `MSG_MORE`, so it leaves in the same TCP segment as the start of
//! the file. When the socket buffer fills after part of the file went out, the rest is a
//! [`Tail`] (src/net/file_tail.rs) that the caller parks in its connection: the loop sends
//! it as the socket drains, and no thread waits for a slow reader. Before that (the socket
//! full from the start, or a caller that cannot park) the writer waits for writability
//! through `block`, bounded by `io_timeout` measured from the last progress: a waiting
//! thread, never a spinning one.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use crate::net::file_tail::Tail;
use crate::net::socket;

/// Waits until `fd` is writable or the deadline passes (`TimedOut`).
pub type Block<'a> = dyn FnMut(RawFd, Instant) -> io::Result<()> + 'a;

/// Called after each part of a file body that reached the socket.
pub type Progress<'a> = dyn FnMut() + 'a;

/// What follows the head.
pub enum Body<'a> {
    None,
    /// A small in-memory body (an error message).
    Bytes(&'a [u8]),
    /// `len` bytes of `file` from `offset`.
    File {
        file: File,
        offset: u64,
        len: u64,
    },
}

/// How much of the body reached the socket, and whether the whole response did.
#[derive(Debug)]
pub struct Sent {
    /// Body bytes sent, counting a parked tail's (they go out after the call).
    pub bytes: u64,
    pub complete: bool,
    /// The end of the file, for the connection to send as its socket drains.
    pub tail: Option<Tail>,
}

/// Writes `head` with `MSG_MORE` (more follows at once); what the socket did not take is
/// written the ordinary way.
fn send_head_more(
    fd: RawFd,
    head: &[u8],
    timeout: Duration,
    block: &mut Block<'_>,
) -> io::Result<()> {
    let flags = libc::MSG_MORE | libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
    let mut done = 0;
    loop {
        let rest = &head[done..];
        // SAFETY: `rest` is a live slice of its length.
        let r = unsafe { libc::send(fd, rest.as_ptr().cast(), rest.len(), flags) };
        if r >= 0 {
            done += r as usize;
            if done == head.len() {
                return Ok(());
            }
            if r > 0 {
                continue;
            }
        } else if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        // Full, refused (a socket type without MSG_MORE) or failed: the ordinary path
        // waits for room or reports the error.
        return socket::write_all_vectored(fd, &[&head[done..]], timeout, block);
    }
}

/// Sends `len` bytes of `file` from `offset`; returns the bytes sent, and the unsent end as
/// a [`Tail`] if the socket filled after sendfile had sent part of it and `park` allows.
/// Stops early, with an error, if the file turns out shorter than `len`.
#[allow(clippy::too_many_arguments)]
fn send_file(
    fd: RawFd,
    file: File,
    offset: u64,
    len: u64,
    timeout: Duration,
    block: &mut Block<'_>,
    progress: &mut Progress<'_>,
    park: bool,
) -> (u64, io::Result<Option<Tail>>) {
    let mut sent = 0u64;
    let mut off = offset as i64;
    let mut deadline: Option<Instant> = None;
    while sent < len {
        let want = (len - sent).min(1 << 30) as usize;
        match socket::sendfile(fd, file.as_raw_fd(), &mut off, want) {
            Ok(0) => return (sent, Err(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => {
                sent += n as u64;
                deadline = None;
                progress();
            }
            // Parked only once sendfile has worked for this file: the tail goes out with
            // sendfile alone.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && park && sent > 0 => {
                return (sent, Ok(Some(Tail::new(file, offset + sent, len - sent))));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let d = *deadline.get_or_insert_with(|| Instant::now() + timeout);
                if let Err(e) = block(fd, d) {
                    return (sent, Err(e));
                }
            }
            Err(e)
                if sent == 0 && matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) =>
            {
                // A file system without sendfile support: copy through a buffer.
                let (sent, r) = copy_file(fd, &file, offset, len, timeout, block, progress);
                return (sent, r.map(|()| None));
            }
            Err(e) => return (sent, Err(e)),
        }
    }
    (sent, Ok(None))
}

/// The fallback for files sendfile cannot read: `pread` and write, 64 KiB at a time.
fn copy_file(
    fd: RawFd,
    file: &File,
    offset: u64,
    len: u64,
    timeout: Duration,
    block: &mut Block<'_>,
    progress: &mut Progress<'_>,
) -> (u64, io::Result<()>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    while sent < len {
        let want = (len - sent).min(buf.len() as u64) as usize;
        let n = match file.read_at(&mut buf[..want], offset + sent) {
            Ok(0) => return (sent, Err(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return (sent, Err(e)),
        };
        if let Err(e) = socket::write_all_vectored(fd, &[&buf[..n]], timeout, block) {
            return (sent, Err(e));
        }
        sent += n as u64;
        progress();
    }
    (sent, Ok(()))
}

/// Writes the head and the body. With `park`, the end of a file body the socket does not
/// take comes back as [`Sent::tail`] instead of being waited for. `complete` is false when
/// the client went away or stopped reading, or the file shrank: the connection must then
/// close, since the response cannot end where its Content-Length said.
pub fn send(
    fd: RawFd,
    head: &[u8],
    body: Body<'_>,
    timeout: Duration,
    block: &mut Block<'_>,
    progress: &mut Progress<'_>,
    park: bool,
) -> Sent {
    let sent = |bytes, complete| Sent {
        bytes,
        complete,
        tail: None,
    };
    match body {
        Body::None => match socket::write_all_vectored(fd, &[head], timeout, block) {
            Ok(()) => sent(0, true),
            Err(_) => sent(0, false),
        },
        Body::Bytes(b) => match socket::write_all_vectored(fd, &[head, b], timeout, block) {
            Ok(()) => sent(b.len() as u64, true),
            Err(_) => sent(0, false),
        },
        Body::File { file, offset, len } => {
            if len == 0 {
                return send(fd, head, Body::None, timeout, block, progress, park);
            }
            if send_head_more(fd, head, timeout, block).is_err() {
                return sent(0, false);
            }
            match send_file(fd, file, offset, len, timeout, block, progress, park) {
                (bytes, Ok(None)) => sent(bytes, true),
                (bytes, Ok(Some(tail))) => Sent {
                    bytes: bytes + tail.left(),
                    complete: true,
                    tail: Some(tail),
                },
                (bytes, Err(_)) => sent(bytes, false),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    fn wait(fd: RawFd, deadline: Instant) -> io::Result<()> {
        socket::wait(fd, socket::Interest::Write, Some(deadline))
    }

    fn temp_file(name: &str, data: &[u8]) -> (std::path::PathBuf, File) {
        let path = std::env::temp_dir().join(format!("ferrule-send-{}-{name}", std::process::id()));
        std::fs::File::create(&path)
            .unwrap()
            .write_all(data)
            .unwrap();
        let f = File::open(&path).unwrap();
        (path, f)
    }

    #[test]
    fn head_and_file_part_through_a_slow_reader() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (path, file) = temp_file("big", &data);
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                std::thread::sleep(Duration::from_micros(50));
                match theirs.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("{e}"),
                }
            }
            got
        });
        let mut parts = 0;
        let sent = send(
            ours.as_raw_fd(),
            b"HEAD\r\n\r\n",
            Body::File {
                file,
                offset: 100,
                len: 2_000_000,
            },
            Duration::from_secs(10),
            &mut wait,
            &mut || parts += 1,
            false,
        );
        assert_eq!((sent.bytes, sent.complete), (2_000_000, true));
        assert!(sent.tail.is_none());
        assert!(parts > 1, "{parts}");
        drop(ours);
        let got = reader.join().unwrap();
        assert_eq!(&got[..8], b"HEAD\r\n\r\n");
        assert!(got[8..] == data[100..2_000_100]);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_reader_that_stops_times_out() {
        let (path, file) = temp_file("stall", &vec![7u8; 8 << 20]);
        let (ours, _theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let start = Instant::now();
        let sent = send(
            ours.as_raw_fd(),
            b"H",
            Body::File {
                file,
                offset: 0,
                len: 8 << 20,
            },
            Duration::from_millis(200),
            &mut wait,
            &mut || {},
            false,
        );
        assert!(!sent.complete);
        assert!(sent.bytes < 8 << 20);
        assert!(start.elapsed() < Duration::from_secs(5));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_file_shorter_than_promised_is_incomplete() {
        let (path, file) = temp_file("short", b"0123456789");
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let sent = send(
            ours.as_raw_fd(),
            b"H",
            Body::File {
                file,
                offset: 0,
                len: 20,
            },
            Duration::from_secs(1),
            &mut wait,
            &mut || {},
            false,
        );
        assert_eq!((sent.bytes, sent.complete), (10, false));
        drop(ours);
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"H0123456789");
        let _ = std::fs::remove_file(path);
    }
    #[test]
    fn the_end_a_full_socket_refuses_is_parked_and_resumed_exactly() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let (path, file) = temp_file("park", &data);
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let sent = send(
            ours.as_raw_fd(),
            b"HEAD\r\n\r\n",
            Body::File {
                file,
                offset: 7,
                len: 2_500_000,
            },
            Duration::from_secs(10),
            &mut |_, _| panic!("a parked send never waits"),
            &mut || {},
            true,
        );
        // Nobody reads yet: the socket took part of the file, the rest is the tail.
        assert!(sent.complete);
        assert_eq!(sent.bytes, 2_500_000);
        let mut tail = sent.tail.expect("a tail");
        assert!(
            tail.left() > 0 && tail.left() < 2_500_000,
            "{}",
            tail.left()
        );
        assert!(
            !tail.resume(ours.as_raw_fd()).unwrap(),
            "the socket is still full"
        );
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 65536];
            while got.len() < 8 + 2_500_000 {
                match theirs.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("{e}"),
                }
            }
            got
        });
        while !tail.resume(ours.as_raw_fd()).unwrap() {
            wait(ours.as_raw_fd(), Instant::now() + Duration::from_secs(10)).unwrap();
        }
        assert_eq!(tail.left(), 0);
        let got = reader.join().unwrap();
        assert_eq!(&got[..8], b"HEAD\r\n\r\n");
        assert!(got[8..] == data[7..2_500_007]);
        let _ = std::fs::remove_file(path);
    }
}
