//! An edge-triggered epoll set shared by all app threads, plus an eventfd to wake it.
//!
//! Connections are registered once, for reading and writing, edge-triggered: no
//! `epoll_ctl` is needed per request. Only the leading thread calls [`Poller::wait`].

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

use super::event::EventFd;

/// Readiness reported for one registered descriptor.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub token: u64,
    pub readable: bool,
    pub writable: bool,
    pub hangup: bool,
}

#[derive(Debug)]
pub struct Poller {
    epfd: RawFd,
    wake: EventFd,
}

/// The token reserved for the wake-up eventfd.
pub const WAKE_TOKEN: u64 = u64::MAX;

impl Poller {
    pub fn new() -> io::Result<Poller> {
        // SAFETY: plain syscalls creating fresh descriptors.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(io::Error::last_os_error());
        }
        let wake = match EventFd::new() {
            Ok(w) => w,
            Err(e) => {
                // SAFETY: we own epfd.
                unsafe { libc::close(epfd) };
                return Err(e);
            }
        };
        let wake_fd = wake.fd();
        let p = Poller { epfd, wake };
        p.ctl(
            libc::EPOLL_CTL_ADD,
            wake_fd,
            WAKE_TOKEN,
            libc::EPOLLIN as u32,
        )?;
        Ok(p)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: valid epoll fd and event struct.
        if unsafe { libc::epoll_ctl(self.epfd, op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Registers a connection for edge-triggered read and write readiness.
    pub fn add_conn(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let ev = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, ev as u32)
    }

    /// Registers a listening socket (edge-triggered; the acceptor drains it).
    pub fn add_listener(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(
            libc::EPOLL_CTL_ADD,
            fd,
            token,
            (libc::EPOLLIN | libc::EPOLLET) as u32,
        )
    }

    pub fn remove(&self, fd: RawFd) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: removing a descriptor; failure (already gone) is harmless.
        unsafe {
            libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_DEL, fd, &mut ev);
        }
    }

    /// Waits up to `timeout_ms` (-1: forever) and appends the events to `out`.
    pub fn wait(&self, out: &mut Vec<Event>, timeout_ms: i32) -> io::Result<usize> {
        const MAX: usize = 256;
        // Not zeroed: epoll_wait fills the first n entries, and only those are read.
        let mut evs: [MaybeUninit<libc::epoll_event>; MAX] = [const { MaybeUninit::uninit() }; MAX];
        // SAFETY: evs has room for MAX events.
        let n =
            unsafe { libc::epoll_wait(self.epfd, evs.as_mut_ptr().cast(), MAX as i32, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        for ev in &evs[..n as usize] {
            // SAFETY: epoll_wait initialised the first n entries.
            let ev = unsafe { ev.assume_init_read() };
            let bits = ev.events;
            out.push(Event {
                token: ev.u64,
                readable: bits & (libc::EPOLLIN as u32) != 0,
                writable: bits & (libc::EPOLLOUT as u32) != 0,
                hangup: bits & ((libc::EPOLLHUP | libc::EPOLLERR | libc::EPOLLRDHUP) as u32) != 0,
            });
        }
        Ok(n as usize)
    }

    /// Wakes a thread blocked in [`Poller::wait`].
    pub fn wake(&self) {
        self.wake.signal();
    }

    /// Clears the wake-up counter after [`WAKE_TOKEN`] was reported.
    pub fn drain_wake(&self) {
        self.wake.drain();
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        // SAFETY: we own the epoll descriptor (the eventfd closes itself).
        unsafe {
            libc::close(self.epfd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_is_reported() {
        let p = Poller::new().unwrap();
        p.wake();
        let mut out = Vec::new();
        p.wait(&mut out, 1000).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].token, WAKE_TOKEN);
        p.drain_wake();
        out.clear();
        assert_eq!(p.wait(&mut out, 0).unwrap(), 0);
    }
}
