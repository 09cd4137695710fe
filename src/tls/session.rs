//! One TLS connection: ciphertext on the client's TCP socket, plaintext on our end of the
//! unix socket pair whose other end the core serves.
//!
//! [`Session::pump`] moves what it can in both directions until every descriptor would
//! block (the terminator's epoll set is edge-triggered). Each direction holds at most one
//! chunk in flight: the TCP socket is not read while plaintext waits for the pair, and the
//! pair is not read while ciphertext waits for the client, so a slow side slows the other
//! down instead of filling memory.

use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

use rustls::{ServerConfig, ServerConnection};

use crate::net::socket::{self, Socket};

const CHUNK: usize = 16 * 1024;

/// `io::Read`/`io::Write` over a non-blocking descriptor.
struct Fd(RawFd);

impl Read for Fd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        socket::read(self.0, buf)
    }
}

impl Write for Fd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        socket::writev(self.0, &[buf])
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

pub struct Session {
    pub tcp: Socket,
    /// Our end of the pair (the core has the other).
    pub pair: Socket,
    tls: ServerConnection,
    /// Decrypted bytes not yet taken by the pair.
    to_pair: Vec<u8>,
    /// The client will send nothing more (close_notify, or its FIN).
    client_done: bool,
    /// The pair's write side is shut down (the core saw the client's end).
    pair_shut: bool,
    /// The core closed its end: nothing more to encrypt.
    core_done: bool,
    /// Handshake deadline, then the deadline to flush the last bytes after the core closed.
    pub deadline: Option<Instant>,
}

/// What the terminator does with a session after a pump.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    Open,
    /// Finished or failed: drop it (closing both sockets).
    Closed,
}

impl Session {
    pub fn new(
        tcp: Socket,
        pair: Socket,
        config: Arc<ServerConfig>,
        handshake_deadline: Instant,
    ) -> Result<Session, rustls::Error> {
        Ok(Session {
            tcp,
            pair,
            tls: ServerConnection::new(config)?,
            to_pair: Vec::new(),
            client_done: false,
            pair_shut: false,
            core_done: false,
            deadline: Some(handshake_deadline),
        })
    }

    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// Moves bytes both ways until nothing more can move now.
    pub fn pump(&mut self, flush_deadline: Instant) -> Status {
        let mut buf = [0u8; CHUNK];
        loop {
            let mut moved = false;
            // Client -> rustls, while the pair keeps up.
            if !self.client_done && self.to_pair.is_empty() && self.tls.wants_read() {
                match self.tls.read_tls(&mut Fd(self.tcp.fd())) {
                    Ok(0) => {
                        self.client_done = true;
                        moved = true;
                    }
                    Ok(_) => moved = true,
                    Err(e) if would_block(&e) => {}
                    Err(_) => return Status::Closed,
                }
                if self.tls.process_new_packets().is_err() {
                    // Send the alert rustls queued, then give up on the connection.
                    let _ = self.tls.write_tls(&mut Fd(self.tcp.fd()));
                    return Status::Closed;
                }
                if !self.tls.is_handshaking() && self.deadline.is_some() && !self.core_done {
                    self.deadline = None;
                }
            }
            // rustls -> plaintext for the pair.
            if self.to_pair.is_empty() {
                match self.tls.reader().read(&mut buf) {
                    Ok(0) => self.client_done = true, // close_notify
                    Ok(n) => {
                        self.to_pair.extend_from_slice(&buf[..n]);
                        moved = true;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(_) => self.client_done = true, // the client closed without close_notify
                }
            }
            if !self.to_pair.is_empty() {
                match socket::writev(self.pair.fd(), &[&self.to_pair]) {
                    Ok(n) => {
                        self.to_pair.drain(..n);
                        moved = true;
                    }
                    Err(e) if would_block(&e) => {}
                    // The core closed its end: the client's bytes have nowhere to go.
                    Err(_) => {
                        self.to_pair.clear();
                        self.core_done = true;
                    }
                }
            }
            if self.client_done && self.to_pair.is_empty() && !self.pair_shut {
                socket::shutdown_write(self.pair.fd());
                self.pair_shut = true;
            }
            // Pair -> rustls, once what was encrypted before has gone out.
            if !self.core_done && !self.tls.is_handshaking() && !self.tls.wants_write() {
                match socket::read(self.pair.fd(), &mut buf) {
                    Ok(0) => {
                        self.core_done = true;
                        self.tls.send_close_notify();
                        self.deadline = Some(flush_deadline);
                        moved = true;
                    }
                    Ok(n) => {
                        if self.tls.writer().write_all(&buf[..n]).is_err() {
                            return Status::Closed;
                        }
                        moved = true;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(_) => {
                        self.core_done = true;
                        self.tls.send_close_notify();
                        self.deadline = Some(flush_deadline);
                    }
                }
            }
            // rustls -> client.
            while self.tls.wants_write() {
                match self.tls.write_tls(&mut Fd(self.tcp.fd())) {
                    Ok(_) => moved = true,
                    Err(e) if would_block(&e) => break,
                    Err(_) => return Status::Closed,
                }
            }
            if self.core_done && !self.tls.wants_write() {
                return Status::Closed;
            }
            if !moved {
                return Status::Open;
            }
        }
    }
}
