//! An eventfd: a counter one thread bumps to wake another that polls it.

use std::io;
use std::os::fd::RawFd;

#[derive(Debug)]
pub struct EventFd {
    fd: RawFd,
}

impl EventFd {
    /// A non-blocking, close-on-exec eventfd.
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: creating a fresh descriptor.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EventFd { fd })
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Makes the descriptor readable (EAGAIN, a full counter, still leaves it readable).
    pub fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: 8-byte write to our eventfd.
        unsafe {
            libc::write(self.fd, (&one as *const u64).cast(), 8);
        }
    }

    /// Resets the counter, so the descriptor is no longer readable.
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: 8-byte read from our non-blocking eventfd.
        unsafe {
            libc::read(self.fd, (&mut v as *mut u64).cast(), 8);
        }
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe {
            libc::close(self.fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::socket::{wait, Interest};
    use std::time::{Duration, Instant};

    fn readable(e: &EventFd) -> bool {
        let soon = Instant::now() + Duration::from_millis(20);
        wait(e.fd(), Interest::Read, Some(soon)).is_ok()
    }

    #[test]
    fn signal_then_drain() {
        let e = EventFd::new().unwrap();
        assert!(!readable(&e));
        e.signal();
        e.signal();
        assert!(readable(&e));
        e.drain();
        assert!(!readable(&e));
    }
}
