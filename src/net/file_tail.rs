//! The end of a file body that a full socket refused: its descriptor and offset, sent with
//! sendfile(2) by the connection loop as the socket drains, so no thread waits for a slow
//! reader (src/server/conn.rs).
//!
//! A `--static` file is the tail's own (opened for the response). A `wsgi.file_wrapper`
//! file belongs to the app, which closes it when the response is over: its tail reads a
//! duplicate descriptor instead. Those duplicates are not counted by the connection limit
//! (unlike a static file, see `max_connections`), so they are bounded on their own by
//! [`set_duplicate_limit`]; past the bound the writer waits for the socket, as before.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::socket;

/// Duplicated descriptors held by tails now, and how many may be.
static DUPLICATED: AtomicUsize = AtomicUsize::new(0);
static DUPLICATE_MAX: AtomicUsize = AtomicUsize::new(0);

/// Sets how many descriptors tails of the app's files may hold at once (0: none).
pub fn set_duplicate_limit(n: usize) {
    DUPLICATE_MAX.store(n, Ordering::Relaxed);
}

/// The descriptors left for tails of the app's files: half of what the open-files limit
/// leaves after `connections` connections of `per_connection` descriptors each.
pub fn duplicate_room(connections: usize, per_connection: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    let soft = usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX);
    soft.saturating_sub(connections.saturating_mul(per_connection)) / 2
}

/// One counted duplicate, given back when dropped.
#[derive(Debug)]
struct Counted;

impl Counted {
    fn take() -> Option<Counted> {
        let before = DUPLICATED.fetch_add(1, Ordering::Relaxed);
        if before < DUPLICATE_MAX.load(Ordering::Relaxed) {
            Some(Counted)
        } else {
            DUPLICATED.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        DUPLICATED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `left` bytes of `file` from `offset`, still to send.
#[derive(Debug)]
pub struct Tail {
    file: File,
    offset: u64,
    left: u64,
    _counted: Option<Counted>,
}

impl Tail {
    /// The tail of a file the caller opened for this response.
    pub fn new(file: File, offset: u64, left: u64) -> Tail {
        Tail {
            file,
            offset,
            left,
            _counted: None,
        }
    }

    /// The tail of a file someone else owns (and may close), read through a descriptor of
    /// its own; `None` past [`set_duplicate_limit`] or if the descriptor cannot be made.
    pub fn duplicate(fd: RawFd, offset: u64, left: u64) -> Option<Tail> {
        let counted = Counted::take()?;
        // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor (or fails) and touches nothing else.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return None;
        }
        // SAFETY: `dup` is a fresh descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(dup) };
        Some(Tail {
            file,
            offset,
            left,
            _counted: Some(counted),
        })
    }

    /// Bytes still to send.
    pub fn left(&self) -> u64 {
        self.left
    }

    /// Sends what the socket `fd` takes without waiting: `Ok(true)` once the whole tail is
    /// out, `Ok(false)` when the socket is full (the rest goes at its next writable event).
    /// A file that turned out shorter than promised is an error: the response cannot end
    /// where its Content-Length said.
    pub fn resume(&mut self, fd: RawFd) -> io::Result<bool> {
        while self.left > 0 {
            let mut off = self.offset as i64;
            let want = self.left.min(1 << 30) as usize;
            match socket::sendfile(fd, self.file.as_raw_fd(), &mut off, want) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    self.offset += n as u64;
                    self.left -= n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn duplicates_stop_at_the_limit_and_come_back_when_dropped() {
        let path = std::env::temp_dir().join(format!("ferrule-tail-{}", std::process::id()));
        std::fs::File::create(&path)
            .unwrap()
            .write_all(b"0123456789")
            .unwrap();
        let f = File::open(&path).unwrap();
        set_duplicate_limit(DUPLICATED.load(Ordering::Relaxed) + 1);
        let a = Tail::duplicate(f.as_raw_fd(), 2, 8).expect("one duplicate");
        assert!(Tail::duplicate(f.as_raw_fd(), 0, 10).is_none());
        // The tail reads its own descriptor: the owner's may close.
        drop(f);
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut a = a;
        assert!(a.resume(ours.as_raw_fd()).unwrap());
        drop(ours);
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut theirs, &mut got).unwrap();
        assert_eq!(got, b"23456789");
        drop(a);
        let f = File::open(&path).unwrap();
        assert!(Tail::duplicate(f.as_raw_fd(), 0, 10).is_some());
        let _ = std::fs::remove_file(path);
    }
}
