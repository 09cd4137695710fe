//! Where access-log lines go without a Python call: a file (or stdout), written by Rust.
//!
//! Lines collect in a buffer that is written when the next line would not fit in
//! [`FLUSH_AT`] bytes, when the server goes idle, and on stop. A write of at most `PIPE_BUF`
//! bytes is atomic on a pipe, so the lines of several workers sharing stdout never interleave
//! mid-line (files are opened `O_APPEND`, where each write lands whole at the end).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::Mutex;

/// `PIPE_BUF` on Linux.
pub const FLUSH_AT: usize = 4096;

/// The open destination: stdout is borrowed, a file is owned.
enum Target {
    Stdout,
    File(File),
}

impl Target {
    fn open(path: &str) -> io::Result<Target> {
        if path == "-" {
            return Ok(Target::Stdout);
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .open(path)?;
        Ok(Target::File(file))
    }

    fn fd(&self) -> RawFd {
        match self {
            Target::Stdout => libc::STDOUT_FILENO,
            Target::File(f) => f.as_raw_fd(),
        }
    }
}

struct Inner {
    target: Target,
    buf: Vec<u8>,
}

pub struct FileSink {
    path: String,
    inner: Mutex<Inner>,
}

impl FileSink {
    /// Opens `path` for appending (created if missing); `-` is stdout.
    pub fn open(path: &str) -> io::Result<FileSink> {
        Ok(FileSink {
            path: path.to_string(),
            inner: Mutex::new(Inner {
                target: Target::open(path)?,
                buf: Vec::with_capacity(FLUSH_AT),
            }),
        })
    }

    /// Queues one line (a newline is added).
    pub fn push(&self, line: &[u8]) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.buf.len() + line.len() + 1 > FLUSH_AT {
            inner.write_out();
        }
        inner.buf.extend_from_slice(line);
        inner.buf.push(b'\n');
        if inner.buf.len() >= FLUSH_AT {
            inner.write_out();
        }
    }

    /// Writes what is queued.
    pub fn flush(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            if !inner.buf.is_empty() {
                inner.write_out();
            }
        }
    }

    /// Writes what is queued, then opens the path again (after logrotate moved the file).
    pub fn reopen(&self) -> io::Result<()> {
        let target = Target::open(&self.path)?;
        if let Ok(mut inner) = self.inner.lock() {
            inner.write_out();
            inner.target = target;
        }
        Ok(())
    }
}

impl Inner {
    /// Writes the buffer out; what cannot be written (a full non-blocking pipe, a closed
    /// stdout, a full disk) is dropped rather than stalling requests.
    fn write_out(&mut self) {
        let fd = self.target.fd();
        let mut done = 0;
        while done < self.buf.len() {
            let rest = &self.buf[done..];
            // SAFETY: `rest` is a valid buffer of `rest.len()` bytes.
            let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
            if n > 0 {
                done += n as usize;
            } else if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            } else {
                break;
            }
        }
        self.buf.clear();
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reach_the_file_in_whole_writes_and_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!("ferrule-sink-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let sink = FileSink::open(path.to_str().unwrap()).unwrap();
        sink.push(b"one");
        assert_eq!(std::fs::read(&path).unwrap(), b"", "buffered until a flush");
        sink.flush();
        assert_eq!(std::fs::read(&path).unwrap(), b"one\n");

        // Past FLUSH_AT the queued lines are written without a flush, whole lines only.
        let line = vec![b'x'; 1000];
        for _ in 0..5 {
            sink.push(&line);
        }
        let written = std::fs::read(&path).unwrap();
        assert_eq!(written.len(), 4 + 4 * 1001);
        assert!(written.ends_with(b"x\n"));

        let rotated = dir.join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        sink.push(b"after");
        sink.reopen().unwrap();
        sink.flush();
        assert_eq!(std::fs::read(&rotated).unwrap().len(), 4 + 5 * 1001 + 6);
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        sink.push(b"new file");
        drop(sink);
        assert_eq!(std::fs::read(&path).unwrap(), b"new file\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
