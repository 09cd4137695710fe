//! Listening sockets handed over from Python: accepting connections and naming
//! the local and peer addresses for the WSGI environ.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use super::socket::{dup_cloexec, set_nonblocking, Socket};

/// The address a peer connected from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    Inet(SocketAddr),
    /// A unix-domain peer: no address or port.
    Unix,
}

impl Peer {
    /// `REMOTE_ADDR` text.
    pub fn host(&self) -> String {
        match self {
            Peer::Inet(a) => a.ip().to_string(),
            Peer::Unix => String::new(),
        }
    }

    /// `REMOTE_PORT` text.
    pub fn port(&self) -> String {
        match self {
            Peer::Inet(a) => a.port().to_string(),
            Peer::Unix => String::new(),
        }
    }
}

/// One listening socket, owned (a dup of the fd Python gave us) until [`Listener::close`].
#[derive(Debug)]
pub struct Listener {
    /// -1 once closed.
    fd: AtomicI32,
    /// `SERVER_NAME` default (used when the request has no Host header).
    pub server_name: String,
    /// `SERVER_PORT`.
    pub server_port: String,
    pub is_unix: bool,
}

fn sockaddr_to_std(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: family says this is a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(storage as *const _ as *const _) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: family says this is a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(storage as *const _ as *const _) };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            let ip = match ip.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(ip),
            };
            Some(SocketAddr::new(ip, u16::from_be(a.sin6_port)))
        }
        _ => None,
    }
}

impl Listener {
    /// Wraps a dup of `fd`, which must be a listening stream socket.
    pub fn from_fd(fd: RawFd) -> io::Result<Listener> {
        let own = dup_cloexec(fd)?;
        let sock = Socket::from_raw(own); // closes the dup if we fail below
        set_nonblocking(own)?;
        // SAFETY: zeroed sockaddr_storage is a valid out-buffer for getsockname.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if unsafe {
            libc::getsockname(own, &mut storage as *mut _ as *mut libc::sockaddr, &mut len)
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        let (server_name, server_port, is_unix) = match sockaddr_to_std(&storage) {
            Some(addr) => {
                let name = match addr.ip() {
                    ip if ip.is_unspecified() => "localhost".to_string(),
                    ip => ip.to_string(),
                };
                (name, addr.port().to_string(), false)
            }
            None => ("localhost".to_string(), String::new(), true),
        };
        std::mem::forget(sock);
        Ok(Listener {
            fd: AtomicI32::new(own),
            server_name,
            server_port,
            is_unix,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.load(Ordering::Acquire)
    }

    /// Closes this process's descriptor: once no process holds the socket, the kernel refuses
    /// new connections (rather than completing handshakes nobody will accept).
    pub fn close(&self) {
        let fd = self.fd.swap(-1, Ordering::AcqRel);
        if fd >= 0 {
            // SAFETY: we owned `fd`, and the swap makes this the only close.
            unsafe { libc::close(fd) };
        }
    }

    /// Accepts one connection (non-blocking, close-on-exec); `WouldBlock` when none waits.
    pub fn accept(&self) -> io::Result<(Socket, Peer)> {
        // SAFETY: zeroed sockaddr_storage is a valid out-buffer for accept4.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        loop {
            let fd = unsafe {
                libc::accept4(
                    self.fd(),
                    &mut storage as *mut _ as *mut libc::sockaddr,
                    &mut len,
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // The peer gave up before we accepted: try the next one.
                    Some(libc::ECONNABORTED) | Some(libc::EPROTO) => continue,
                    _ => return Err(e),
                }
            }
            let peer = match sockaddr_to_std(&storage) {
                Some(a) => Peer::Inet(a),
                None => Peer::Unix,
            };
            return Ok((Socket::from_raw(fd), peer));
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
    }
}
