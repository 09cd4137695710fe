//! The TLS terminator thread: accepts on the listening sockets, runs the sessions, and hands
//! the core the plaintext end of a socket pair per connection (see the module above).
//!
//! It never takes the GIL. On a stop it takes what is queued on the listening sockets,
//! closes them, and runs until every session has finished (the core closes its ends).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::session::{Session, Status};
use crate::net::listener::Peer;
use crate::net::poller::{Event, Poller, WAKE_TOKEN};
use crate::net::socket::{self, Socket};
use crate::server::pool::{Shared, FULL_WARNING_EVERY};

const LISTENER_BIT: u64 = 1 << 63;
/// How often deadlines are checked (and how long a stop waits between checks).
const TICK: Duration = Duration::from_millis(100);

struct Terminator {
    shared: Arc<Shared>,
    poller: Poller,
    sessions: Vec<Option<Session>>,
    free: Vec<usize>,
    listeners_closed: bool,
    /// Accepting stopped at `max_connections`; a session's end resumes it.
    paused: bool,
    /// When the limit was last logged.
    last_full_warning: Option<Instant>,
}

/// Runs the terminator until a stop has finished its sessions.
pub fn run(shared: Arc<Shared>) {
    let poller = match Poller::new() {
        Ok(p) => p,
        Err(e) => {
            shared.log_unattached("error", &format!("TLS terminator: {e}"));
            shared.stop();
            return;
        }
    };
    for (i, l) in shared.listeners.iter().enumerate() {
        if let Err(e) = poller.add_listener(l.fd(), LISTENER_BIT | i as u64) {
            shared.log_unattached("error", &format!("TLS terminator: listening socket: {e}"));
        }
    }
    let mut t = Terminator {
        shared,
        poller,
        sessions: Vec::new(),
        free: Vec::new(),
        listeners_closed: false,
        paused: false,
        last_full_warning: None,
    };
    t.run();
}

impl Terminator {
    fn run(&mut self) {
        let mut events: Vec<Event> = Vec::with_capacity(256);
        let mut next_sweep = Instant::now() + TICK;
        loop {
            if self.shared.is_stopping() {
                self.close_listeners();
                if self.live() == 0 || self.shared.stop_expired() {
                    return;
                }
            }
            events.clear();
            let _ = self.poller.wait(&mut events, TICK.as_millis() as i32);
            for ev in &events {
                if ev.token == WAKE_TOKEN {
                    self.poller.drain_wake();
                } else if ev.token & LISTENER_BIT != 0 {
                    self.accept((ev.token & !LISTENER_BIT) as usize);
                } else {
                    self.pump((ev.token >> 1) as usize);
                }
            }
            let now = Instant::now();
            if now >= next_sweep {
                next_sweep = now + TICK;
                self.sweep(now);
            }
            if self.paused && self.live() < self.shared.cfg.max_connections {
                // Sessions ended: take the clients that waited in the listen backlog
                // (their edge came and went while accepting was paused).
                self.paused = false;
                for index in 0..self.shared.listeners.len() {
                    self.accept(index);
                }
            }
        }
    }

    fn live(&self) -> usize {
        self.sessions.len() - self.free.len()
    }

    /// Backpressure, as the core applies it to plain connections: at `max_connections`
    /// sessions, stop accepting (new clients wait in the listen backlog) until one ends.
    fn at_connection_limit(&mut self) -> bool {
        let max = self.shared.cfg.max_connections;
        if self.live() < max {
            return false;
        }
        self.paused = true;
        let now = Instant::now();
        if self
            .last_full_warning
            .is_none_or(|t| now.duration_since(t) >= FULL_WARNING_EVERY)
        {
            self.last_full_warning = Some(now);
            self.shared.log_unattached(
                "warning",
                &format!(
                    "{max} TLS connections open (max_connections): new connections wait in \
                     the listen backlog"
                ),
            );
        }
        true
    }

    fn accept(&mut self, index: usize) {
        if self.listeners_closed {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let Some(listener) = shared.listeners.get(index) else {
            return;
        };
        loop {
            if self.at_connection_limit() {
                return;
            }
            let (tcp, peer) = match listener.accept() {
                Ok(v) => v,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.shared
                        .log_unattached("error", &format!("accept() failed: {e}"));
                    return;
                }
            };
            socket::set_nodelay(tcp.fd());
            self.start(tcp, peer, index);
        }
    }

    fn start(&mut self, tcp: Socket, peer: Peer, listener: usize) {
        let Some(config) = self.shared.tls.as_ref().and_then(|t| t.config()) else {
            return;
        };
        let (ours, core) = match socket::stream_pair() {
            Ok(p) => p,
            Err(e) => {
                self.shared
                    .log_unattached("error", &format!("TLS: socketpair failed: {e}"));
                return;
            }
        };
        let handshake = Instant::now() + self.shared.cfg.header_timeout;
        let Ok(session) = Session::new(tcp, ours, config, handshake) else {
            return;
        };
        let slot = match self.free.pop() {
            Some(i) => i,
            None => {
                self.sessions.push(None);
                self.sessions.len() - 1
            }
        };
        let token = (slot as u64) << 1;
        let registered = self.poller.add_conn(session.tcp.fd(), token).is_ok()
            && self.poller.add_conn(session.pair.fd(), token | 1).is_ok();
        self.sessions[slot] = Some(session);
        if !registered {
            self.close(slot);
            return;
        }
        self.shared.adopt(core, peer, listener);
        self.pump(slot);
    }

    fn pump(&mut self, slot: usize) {
        let flush = Instant::now() + self.shared.cfg.io_timeout;
        let status = match self.sessions.get_mut(slot) {
            Some(Some(session)) => session.pump(flush),
            _ => return,
        };
        if status == Status::Closed {
            self.close(slot);
        }
    }

    fn close(&mut self, slot: usize) {
        if let Some(Some(session)) = self.sessions.get_mut(slot).map(Option::take) {
            self.poller.remove(session.tcp.fd());
            self.poller.remove(session.pair.fd());
            self.free.push(slot);
        }
    }

    /// Drops sessions past their deadline: a handshake that took too long, or the last
    /// bytes to a client that stopped reading.
    fn sweep(&mut self, now: Instant) {
        for slot in 0..self.sessions.len() {
            let expired = self.sessions[slot]
                .as_ref()
                .and_then(|s| s.deadline)
                .is_some_and(|d| d <= now);
            if expired {
                self.close(slot);
            }
        }
    }

    /// On a stop: take the connections already queued (a close would reset them), then
    /// close this process's listening descriptors.
    fn close_listeners(&mut self) {
        if self.listeners_closed {
            return;
        }
        for index in 0..self.shared.listeners.len() {
            self.accept(index);
        }
        self.listeners_closed = true;
        for l in &self.shared.listeners {
            self.poller.remove(l.fd());
            l.close();
        }
        self.shared.mark_listeners_closed();
    }
}
