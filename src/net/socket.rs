//! Non-blocking socket I/O on raw file descriptors: read, writev, sendfile and
//! waiting for readiness with `poll(2)`.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// An owned socket file descriptor, closed on drop.
#[derive(Debug)]
pub struct Socket {
    fd: RawFd,
}

impl Socket {
    /// Takes ownership of `fd`.
    pub fn from_raw(fd: RawFd) -> Socket {
        Socket { fd }
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor and close it exactly once.
        unsafe {
            libc::close(self.fd);
        }
    }
}

fn cvt(ret: isize) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// `recvfrom(2)` without a source address, made directly. glibc's `recv`, `send` and
/// `sendmsg` are pthread cancellation points: in a threaded process each call first
/// switches the thread to asynchronous cancellation and back (two atomic updates).
/// ferrule never cancels a thread, and these calls are made once per request.
///
/// SAFETY: `buf` must be writable for `len` bytes.
unsafe fn sys_recv(fd: RawFd, buf: *mut libc::c_void, len: usize, flags: libc::c_int) -> isize {
    let null = std::ptr::null_mut::<libc::sockaddr>();
    // SAFETY: as the caller promises; no address is asked for.
    unsafe { libc::syscall(libc::SYS_recvfrom, fd, buf, len, flags, null, null) as isize }
}

/// One `recv(2)` from a socket; `WouldBlock` when no data is ready. (`recv` and `sendmsg`
/// go straight to the socket layer, where `read` and `writev` first pass through the VFS.)
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is a valid writable slice for its length.
        let r = unsafe { sys_recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        match cvt(r) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Reads what is there from any descriptor (a pipe too) until it would block or ends.
pub fn drain(fd: RawFd) {
    let mut buf = [0u8; 64];
    // SAFETY: buf is a valid writable slice for its length.
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

/// One `recv(2)` into the spare capacity of `buf` (no zeroing first), extending its
/// length by what was read; `WouldBlock` when no data is ready. The caller reserves.
pub fn read_spare(fd: RawFd, buf: &mut Vec<u8>) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    loop {
        // SAFETY: `spare` is writable memory of its length; recv(2) writes at most that.
        let r = unsafe { sys_recv(fd, spare.as_mut_ptr().cast(), spare.len(), 0) };
        match cvt(r) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(n) => {
                let len = buf.len() + n;
                // SAFETY: read(2) initialised the `n` bytes after the old length, and
                // `n <= spare.len()`, so the new length is within capacity.
                unsafe { buf.set_len(len) };
                return Ok(n);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether a socket has bytes waiting to be read, without reading them: `Some(true)`
/// for data, `Some(false)` for the peer's end of stream, `None` for nothing yet.
pub fn has_input(fd: RawFd) -> Option<bool> {
    let mut b = 0u8;
    // SAFETY: a one-byte peek into a local.
    let r = unsafe {
        libc::recv(
            fd,
            (&mut b as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match r {
        n if n > 0 => Some(true),
        0 => Some(false),
        _ => None,
    }
}

/// One gathering `sendmsg(2)` of up to 64 slices to a socket (one slice goes with
/// `sendto(2)`, which has no vector to copy in); `WouldBlock` when the send buffer is
/// full. A peer that went away is `BrokenPipe`, never a SIGPIPE. Made directly, as
/// [`sys_recv`] says why.
pub fn writev(fd: RawFd, bufs: &[&[u8]]) -> io::Result<usize> {
    if let [one] = bufs {
        let null = std::ptr::null::<libc::sockaddr>();
        loop {
            // SAFETY: `one` is a live slice; sendto reads at most its length.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_sendto,
                    fd,
                    one.as_ptr(),
                    one.len(),
                    libc::MSG_NOSIGNAL,
                    null,
                    0 as libc::socklen_t,
                )
            } as isize;
            match cvt(r) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
    let mut iov = [const { MaybeUninit::<libc::iovec>::uninit() }; 64];
    let n = bufs.len().min(64);
    for (slot, b) in iov.iter_mut().zip(bufs.iter()) {
        slot.write(libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        });
    }
    // SAFETY: an all-zero msghdr is a valid empty one (no address, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr().cast();
    msg.msg_iovlen = n as _;
    loop {
        // SAFETY: the first n iovecs are initialised and point at live slices.
        let r = unsafe {
            libc::syscall(
                libc::SYS_sendmsg,
                fd,
                &msg as *const libc::msghdr,
                libc::MSG_NOSIGNAL,
            )
        } as isize;
        match cvt(r) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// One `sendfile(2)` from `file_fd` at `offset`.
pub fn sendfile(fd: RawFd, file_fd: RawFd, offset: &mut i64, count: usize) -> io::Result<usize> {
    loop {
        // SAFETY: offset is a valid pointer to an off_t.
        let r = unsafe { libc::sendfile(fd, file_fd, offset as *mut i64, count) };
        match cvt(r) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// What to wait for in [`wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    Read,
    Write,
}

/// Blocks until `fd` is ready or `deadline` passes. Returns `TimedOut` on expiry.
pub fn wait(fd: RawFd, interest: Interest, deadline: Option<Instant>) -> io::Result<()> {
    let events = match interest {
        Interest::Read => libc::POLLIN | libc::POLLRDHUP,
        Interest::Write => libc::POLLOUT,
    };
    loop {
        let timeout = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::from(io::ErrorKind::TimedOut));
                }
                // Round up so we never spin on a sub-millisecond remainder.
                (left.as_micros().div_ceil(1000)).min(i32::MAX as u128) as i32
            }
        };
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r > 0 {
            return Ok(());
        }
    }
}

/// Writes all of `bufs`, waiting (with `block`) whenever the socket is full.
///
/// `block` is called with the remaining deadline when the send buffer is full; it is
/// how callers release the GIL around the wait.
pub fn write_all_vectored(
    fd: RawFd,
    bufs: &[&[u8]],
    timeout: Duration,
    block: &mut dyn FnMut(RawFd, Instant) -> io::Result<()>,
) -> io::Result<()> {
    write_all_vectored_from(fd, bufs, 0, timeout, block)
}

/// [`write_all_vectored`] for `bufs` whose first `skip` bytes were written already.
pub fn write_all_vectored_from(
    fd: RawFd,
    bufs: &[&[u8]],
    mut skip: usize,
    timeout: Duration,
    block: &mut dyn FnMut(RawFd, Instant) -> io::Result<()>,
) -> io::Result<()> {
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let mut deadline: Option<Instant> = None;
    while skip < total {
        let written = if skip == 0 {
            // The usual case, all in one go: the caller's slices as they are.
            writev(fd, bufs)
        } else {
            let mut parts: [&[u8]; 64] = [&[]; 64];
            let mut n = 0;
            let mut off = skip;
            for b in bufs {
                if off >= b.len() {
                    off -= b.len();
                    continue;
                }
                if n == parts.len() {
                    break;
                }
                parts[n] = &b[off..];
                off = 0;
                n += 1;
            }
            writev(fd, &parts[..n])
        };
        match written {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(w) => {
                skip += w;
                deadline = None;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let d = *deadline.get_or_insert_with(|| Instant::now() + timeout);
                block(fd, d)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sets `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we were given.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Disables Nagle's algorithm (ignored for non-TCP sockets).
pub fn set_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a valid int option; failure (e.g. unix socket) is harmless.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Sets `SO_RCVLOWAT`: on Linux TCP, readiness (epoll, poll) is reported only once `bytes`
/// are queued, or earlier when the peer has used up its receive window or the buffer is
/// full. Linux also grows the receive buffer toward that size, up to `net.ipv4.tcp_rmem`'s
/// maximum. Unix sockets accept the option but report readiness on any byte.
pub fn set_rcvlowat(fd: RawFd, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt with a valid int option.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// How many bytes are queued for reading (`FIONREAD`).
pub fn queued(fd: RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

/// Half-closes the write side, so a client sees the end of a close-delimited body.
pub fn shutdown_write(fd: RawFd) {
    // SAFETY: shutdown on a live socket; errors (already closed) are harmless.
    unsafe {
        libc::shutdown(fd, libc::SHUT_WR);
    }
}

/// A connected pair of non-blocking, close-on-exec unix stream sockets.
pub fn stream_pair() -> io::Result<(Socket, Socket)> {
    let mut fds = [0; 2];
    let kind = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: socketpair fills two descriptors on success.
    if unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((Socket::from_raw(fds[0]), Socket::from_raw(fds[1])))
}

/// `dup(2)` with close-on-exec.
pub fn dup_cloexec(fd: RawFd) -> io::Result<RawFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a caller-provided descriptor.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Socket, Socket) {
        let mut fds = [0; 2];
        // SAFETY: socketpair fills two descriptors.
        let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
        assert_eq!(r, 0);
        (Socket::from_raw(fds[0]), Socket::from_raw(fds[1]))
    }

    #[test]
    fn read_would_block_when_empty() {
        let (a, _b) = pair();
        set_nonblocking(a.fd()).unwrap();
        let mut buf = [0u8; 8];
        let e = read(a.fd(), &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn read_spare_appends_without_touching_what_is_there() {
        let (a, b) = pair();
        set_nonblocking(a.fd()).unwrap();
        writev(b.fd(), &[b"world"]).unwrap();
        let mut buf = Vec::with_capacity(3);
        buf.extend_from_slice(b"hi ");
        buf.reserve(16);
        assert_eq!(read_spare(a.fd(), &mut buf).unwrap(), 5);
        assert_eq!(buf, b"hi world");
        let e = read_spare(a.fd(), &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(buf, b"hi world");
    }

    #[test]
    fn has_input_sees_data_and_end_without_consuming() {
        let (a, b) = pair();
        assert_eq!(has_input(a.fd()), None);
        writev(b.fd(), &[b"x"]).unwrap();
        assert_eq!(has_input(a.fd()), Some(true));
        assert_eq!(has_input(a.fd()), Some(true));
        let mut buf = [0u8; 4];
        assert_eq!(read(a.fd(), &mut buf).unwrap(), 1);
        drop(b);
        assert_eq!(has_input(a.fd()), Some(false));
    }

    #[test]
    fn write_all_vectored_spans_slices() {
        let (a, b) = pair();
        let mut never = |_: RawFd, _: Instant| -> io::Result<()> { Ok(()) };
        write_all_vectored(
            a.fd(),
            &[b"he", b"", b"llo"],
            Duration::from_secs(1),
            &mut never,
        )
        .unwrap();
        let mut buf = [0u8; 8];
        let n = read(b.fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
    }

    #[test]
    fn write_all_vectored_resumes_partial_writes_over_64_slices() {
        let (a, b) = pair();
        set_nonblocking(a.fd()).unwrap();
        // 100 slices of 10 KiB: more than one writev's 64, and more than the socket
        // buffer holds, so writes end part-way through a slice and resume there.
        let slices: Vec<Vec<u8>> = (0..100u8)
            .map(|i| {
                (0..10_240)
                    .map(|j| i.wrapping_mul(31) ^ (j % 251) as u8)
                    .collect()
            })
            .collect();
        let want: Vec<u8> = slices.concat();
        let reader_fd = b.fd();
        let total = want.len();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::with_capacity(total);
            let mut buf = vec![0u8; 7_000];
            while got.len() < total {
                let n = match read(reader_fd, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                };
                got.extend_from_slice(&buf[..n]);
            }
            got
        });
        let refs: Vec<&[u8]> = slices.iter().map(Vec::as_slice).collect();
        let mut block = |fd: RawFd, d: Instant| wait(fd, Interest::Write, Some(d));
        for group in refs.chunks(64) {
            write_all_vectored(a.fd(), group, Duration::from_secs(5), &mut block).unwrap();
        }
        assert!(reader.join().unwrap() == want);
    }

    #[test]
    fn wait_times_out() {
        let (a, _b) = pair();
        let d = Instant::now() + Duration::from_millis(20);
        let e = wait(a.fd(), Interest::Read, Some(d)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
