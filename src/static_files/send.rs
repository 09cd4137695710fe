//! Writing a static response: the head, then the body from the file with sendfile(2).
//!
//! The head goes out with `MSG_MORE`, so it leaves in the same TCP segment as the start of
//! the file. When the socket buffer is full, the writer waits for writability through
//! `block` (bounded by `io_timeout`, measured from the last progress), exactly as
//! `wsgi.file_wrapper` bodies do in `src/wsgi/output.rs`: a slow reader costs a waiting
//! thread, never a spinning one.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

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
        file: &'a File,
        offset: u64,
        len: u64,
    },
}

/// How much of the body reached the socket, and whether the whole response did.
#[derive(Debug, PartialEq, Eq)]
pub struct Sent {
    pub bytes: u64,
    pub complete: bool,
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

/// Sends `len` bytes of `file` from `offset`; returns the bytes sent. Stops early (without
/// an error) if the file turns out shorter than `len`.
fn send_file(
    fd: RawFd,
    file: &File,
    offset: u64,
    len: u64,
    timeout: Duration,
    block: &mut Block<'_>,
    progress: &mut Progress<'_>,
) -> (u64, io::Result<()>) {
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
                return copy_file(fd, file, offset, len, timeout, block, progress);
            }
            Err(e) => return (sent, Err(e)),
        }
    }
    (sent, Ok(()))
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

/// Writes the head and the body. `complete` is false when the client went away or stopped
/// reading, or the file shrank: the connection must then close, since the response cannot
/// end where its Content-Length said.
pub fn send(
    fd: RawFd,
    head: &[u8],
    body: Body<'_>,
    timeout: Duration,
    block: &mut Block<'_>,
    progress: &mut Progress<'_>,
) -> Sent {
    let failed = |bytes| Sent {
        bytes,
        complete: false,
    };
    match body {
        Body::None => match socket::write_all_vectored(fd, &[head], timeout, block) {
            Ok(()) => Sent {
                bytes: 0,
                complete: true,
            },
            Err(_) => failed(0),
        },
        Body::Bytes(b) => match socket::write_all_vectored(fd, &[head, b], timeout, block) {
            Ok(()) => Sent {
                bytes: b.len() as u64,
                complete: true,
            },
            Err(_) => failed(0),
        },
        Body::File { file, offset, len } => {
            if len == 0 {
                return send(fd, head, Body::None, timeout, block, progress);
            }
            if send_head_more(fd, head, timeout, block).is_err() {
                return failed(0);
            }
            match send_file(fd, file, offset, len, timeout, block, progress) {
                (bytes, Ok(())) => Sent {
                    bytes,
                    complete: true,
                },
                (bytes, Err(_)) => failed(bytes),
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
                file: &file,
                offset: 100,
                len: 2_000_000,
            },
            Duration::from_secs(10),
            &mut wait,
            &mut || parts += 1,
        );
        assert_eq!(
            sent,
            Sent {
                bytes: 2_000_000,
                complete: true
            }
        );
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
                file: &file,
                offset: 0,
                len: 8 << 20,
            },
            Duration::from_millis(200),
            &mut wait,
            &mut || {},
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
                file: &file,
                offset: 0,
                len: 20,
            },
            Duration::from_secs(1),
            &mut wait,
            &mut || {},
        );
        assert_eq!(
            sent,
            Sent {
                bytes: 10,
                complete: false
            }
        );
        drop(ours);
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"H0123456789");
        let _ = std::fs::remove_file(path);
    }
}
