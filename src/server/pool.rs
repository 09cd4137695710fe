//! The app threads: a leader/follower pool in which the GIL is the leadership token.
//!
//! The leader holds the GIL, takes ready connections, parses, calls the app inline
//! and writes the answer: no thread hand-over on the request path. When the app
//! blocks (and so releases the GIL), the watcher ([`super::watch`]) hands leadership
//! to an idle thread, which takes the GIL at once. A thread whose app call returns
//! after it lost leadership finishes that response, then either takes leadership
//! back (if the leader is itself stuck in the app) or goes idle.
//! See docs/architecture.md.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyString;

use super::access::format::Record;
use super::access::AccessLog;
use super::clock::Tick;
use super::config::Config;
use super::conn::{refuse, serve, Conn, Next};
use super::deferred::Deferred;
use super::metrics::Metrics;
use super::slots::Slots;
use crate::http::error::HttpError;
use crate::net::event::EventFd;
use crate::net::file_tail;
use crate::net::listener::{Listener, Peer};
use crate::net::poller::{Event, Poller, WAKE_TOKEN};
use crate::net::socket::{self, set_nodelay, Socket};
use crate::tls::Tls;
use crate::wsgi::environ::EnvironBuilder;
use crate::wsgi::log::Loggers;
use crate::wsgi::start_response::{OnWrite, StartResponse};

/// Tokens with this bit name a listener (its index in the low bits).
const LISTENER_BIT: u64 = 1 << 63;
/// Set on a connection's token when its event reported a hang-up (the peer's FIN).
const HUP_BIT: u64 = 1 << 62;
const NO_LEADER: usize = usize::MAX;
const ACCEPT_BATCH: usize = 64;
/// How often the "connection limit reached" warning may repeat.
pub(crate) const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);
const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// How often a stopping server looks at the connections it still has.
const STOP_TICK: Duration = Duration::from_millis(20);

/// What the watcher can see of one app thread.
pub struct ThreadInfo {
    /// The number of exchanges the thread has started, shifted left by one; the low bit
    /// is set while it is inside one. Read it with [`ThreadInfo::exchange`]. Shared with
    /// the thread's `write()` progress ([`write_progress`]).
    in_app: Arc<AtomicU64>,
    /// The thread's CPU-time clock (`pthread_getcpuclockid`).
    pub clock: AtomicI32,
    pub handle: OnceLock<Thread>,
    /// The request line of the exchange in progress (kept only for the heartbeat).
    pub line: Mutex<String>,
}

/// Leadership and the idle threads.
pub struct Pool {
    pub leader: AtomicUsize,
    pub threads: Vec<ThreadInfo>,
    pub idle: Mutex<Vec<usize>>,
    /// The watcher sleeps here while nothing runs in the app.
    pub watcher_dormant: AtomicBool,
    pub watcher: OnceLock<Thread>,
    /// Threads still running, and a condvar signalled as each exits.
    pub alive: Mutex<usize>,
    pub exited: Condvar,
}

impl ThreadInfo {
    /// The exchanges this thread has started so far, and whether it is inside the last.
    pub fn exchange(&self) -> (u64, bool) {
        let v = self.in_app.load(Ordering::Acquire);
        (v >> 1, v & 1 == 1)
    }

    /// The number of the exchange this thread is inside, if it is inside one.
    pub fn current(&self) -> Option<u64> {
        match self.exchange() {
            (seq, true) => Some(seq),
            _ => None,
        }
    }
}

impl Pool {
    fn new(n: usize) -> Pool {
        Pool {
            leader: AtomicUsize::new(0),
            threads: (0..n)
                .map(|_| ThreadInfo {
                    in_app: Arc::new(AtomicU64::new(0)),
                    clock: AtomicI32::new(-1),
                    handle: OnceLock::new(),
                    line: Mutex::new(String::new()),
                })
                .collect(),
            idle: Mutex::new(Vec::new()),
            watcher_dormant: AtomicBool::new(false),
            watcher: OnceLock::new(),
            alive: Mutex::new(0),
            exited: Condvar::new(),
        }
    }

    /// Makes `to` the leader if `from` still is; wakes it.
    pub fn hand_over(&self, from: usize, to: usize) -> bool {
        if self
            .leader
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            if let Some(t) = self.threads.get(to).and_then(|t| t.handle.get()) {
                t.unpark();
            }
            true
        } else {
            false
        }
    }

    fn wake_watcher(&self) {
        if self.watcher_dormant.load(Ordering::Relaxed)
            && self.watcher_dormant.swap(false, Ordering::AcqRel)
        {
            if let Some(w) = self.watcher.get() {
                w.unpark();
            }
        }
    }
}

/// Everything the app threads share.
pub struct Shared {
    pub cfg: Config,
    pub poller: Poller,
    pub listeners: Vec<Listener>,
    pub slots: Slots,
    pub ready: Mutex<VecDeque<u64>>,
    pub stopping: AtomicBool,
    /// Readable once a stop began: wakes `Server.run()`.
    pub stopped: EventFd,
    /// Requests taken so far.
    pub served: AtomicU64,
    /// Request metrics (`metrics` in the config): counters only, see [`Metrics`].
    pub metrics: Option<Metrics>,
    /// Connections holding a complete response for the next flush.
    pub deferred: Deferred,
    pub pool: Pool,
    pub app: Py<PyAny>,
    pub environ: EnvironBuilder,
    pub loggers: Loggers,
    pub access: Option<AccessLog>,
    /// TLS termination; its thread owns the listening sockets (src/tls/).
    pub tls: Option<Arc<Tls>>,
    /// Connections handed over by the TLS terminator, registered by the next app thread.
    inbox: Mutex<Vec<(Socket, Peer, usize)>>,
    next_sweep: Mutex<Tick>,
    listeners_closed: AtomicBool,
    /// Accepting stopped at `max_connections`; the next slot released resumes it.
    accept_paused: AtomicBool,
    /// When the "connection limit reached" warning was last logged.
    last_full_warning: Mutex<Option<Instant>>,
    /// When a graceful stop gives up on connections that have not sent a request.
    stop_deadline: OnceLock<Instant>,
}

/// Per-thread state.
pub struct ThreadCtx {
    pub index: usize,
    events: Vec<Event>,
    /// The request line's buffer, reused from one exchange to the next.
    pub line: String,
    /// Where a read at the start of a request lands (see `Conn::fill`).
    pub scratch: Vec<u8>,
    /// Other ready work waits behind the connection being served: a response finished
    /// now may be held for the flush after it (src/server/deferred.rs).
    pub more_ready: bool,
    /// The last exchange's `start_response`, when nothing else kept a reference to it:
    /// the next exchange on this thread reuses it.
    pub spare_start_response: Option<Py<StartResponse>>,
    /// What this thread's `start_response` objects call after a `write()` block went out.
    pub on_write: OnWrite,
}

impl ThreadCtx {
    /// Marks this thread as inside the exchange for `line` (seen by the watcher and
    /// the heartbeat).
    pub fn enter_app(&mut self, shared: &Shared, line: &str) {
        if shared.cfg.heartbeat.is_some() {
            if let Some(mut l) = shared
                .pool
                .threads
                .get(self.index)
                .and_then(|t| t.line.lock().ok())
            {
                l.clear();
                l.push_str(line);
            }
        }
        shared.mark_in_app(self.index, true);
    }

    pub fn leave_app(&mut self, shared: &Shared) {
        shared.mark_in_app(self.index, false);
    }

    /// Notes that the exchange for `line` made progress (a block of its body went out):
    /// at most every [`PROGRESS_MARK`] since `*marked` (none: the first call only starts
    /// counting), it counts as a new exchange, so a long download or stream that keeps
    /// going is not reported by the heartbeat as one request stuck past `worker_timeout`.
    pub fn progressed(&mut self, shared: &Shared, line: &str, marked: &mut Option<Tick>) {
        let now = Tick::now();
        match marked {
            Some(m) if now < *m + PROGRESS_MARK => {}
            Some(m) => {
                self.enter_app(shared, line);
                *m = now;
            }
            None => *marked = Some(now),
        }
    }
}

/// How often an exchange that keeps making progress counts as a new one (see
/// [`ThreadCtx::progressed`]): well under any sensible `worker_timeout` (the heartbeat
/// beats every 250 ms).
pub const PROGRESS_MARK: Duration = Duration::from_millis(100);

/// [`ThreadCtx::progressed`] for a body the app writes through `write()` inside one call:
/// at most every [`PROGRESS_MARK`], the exchange the thread is inside (`in_app`) counts as
/// a new one, so a legacy app that keeps streaming is not a request stuck past
/// `worker_timeout`. `last` is the time of the last mark (0: none yet).
fn write_progress(in_app: &AtomicU64, last: &AtomicU64) {
    let now = Tick::now();
    let prev = last.load(Ordering::Relaxed);
    if prev != 0 && now.as_nanos() < prev.saturating_add(PROGRESS_MARK.as_nanos() as u64) {
        return;
    }
    last.store(now.as_nanos(), Ordering::Relaxed);
    // Only while inside an exchange (a write() kept past its end changes nothing).
    let _ = in_app.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
        (v & 1 == 1).then_some(v + 2)
    });
}

impl Shared {
    pub fn new(
        cfg: Config,
        listeners: Vec<Listener>,
        app: Py<PyAny>,
        environ: EnvironBuilder,
        loggers: Loggers,
        access: Option<AccessLog>,
        tls: Option<Arc<Tls>>,
    ) -> std::io::Result<Shared> {
        let poller = Poller::new()?;
        if tls.is_none() {
            for (i, l) in listeners.iter().enumerate() {
                poller.add_listener(l.fd(), LISTENER_BIT | i as u64)?;
            }
        }
        let threads = cfg.threads;
        let max = cfg.max_connections;
        // A connection holds its socket, a socket pair to the TLS terminator, and with
        // static mounts the file of a parked static response: `max_connections` counts
        // them (python/ferrule/server.py). The parked end of an app's file holds a
        // duplicate: with static mounts, in the place of a static file (one per
        // connection); without, in half of what the connections leave of `ulimit -n`.
        let per_connection = 1 + if tls.is_some() { 2 } else { 0 };
        file_tail::set_duplicate_limit(if cfg.static_files.is_empty() {
            file_tail::duplicate_room(max, per_connection)
        } else {
            max
        });
        let metrics = match (cfg.metrics, cfg.heartbeat, cfg.metrics_offset) {
            (false, _, _) => None,
            (true, Some((fd, _)), Some(offset)) => Some(Metrics::shared(fd, offset)?),
            (true, _, _) => Some(Metrics::private()),
        };
        Ok(Shared {
            cfg,
            poller,
            listeners,
            slots: Slots::new(max),
            ready: Mutex::new(VecDeque::with_capacity(256)),
            stopping: AtomicBool::new(false),
            stopped: EventFd::new()?,
            served: AtomicU64::new(0),
            metrics,
            deferred: Deferred::default(),
            pool: Pool::new(threads),
            app,
            environ,
            loggers,
            access,
            tls,
            inbox: Mutex::new(Vec::new()),
            next_sweep: Mutex::new(Tick::now() + SWEEP_EVERY),
            listeners_closed: AtomicBool::new(false),
            accept_paused: AtomicBool::new(false),
            last_full_warning: Mutex::new(None),
            stop_deadline: OnceLock::new(),
        })
    }

    /// Counts a request about to run; the one that reaches `max_requests` starts a
    /// graceful stop before its response is written, so it says `Connection: close`.
    pub fn admit(&self) {
        let n = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        if n == self.cfg.max_requests {
            self.stop();
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Starts a graceful stop: no new connections, idle ones closed, running ones finish.
    pub fn stop(&self) {
        let grace = self.cfg.header_timeout.min(self.cfg.graceful_timeout);
        let _ = self.stop_deadline.set(Instant::now() + grace);
        self.stopping.store(true, Ordering::Release);
        self.stopped.signal();
        self.poller.wake();
        for t in &self.pool.threads {
            if let Some(h) = t.handle.get() {
                h.unpark();
            }
        }
        if let Some(w) = self.pool.watcher.get() {
            w.unpark();
        }
    }

    /// Marks thread `index` inside a new exchange, or outside any. The count goes on from
    /// where it is, `write()` progress included (atomically: a `write()` may run on
    /// another thread), so a new exchange never repeats a number the watcher or the
    /// heartbeat has seen.
    fn mark_in_app(&self, index: usize, inside: bool) {
        if let Some(t) = self.pool.threads.get(index) {
            if inside {
                let _ = t
                    .in_app
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                        Some(((v >> 1) + 1) << 1 | 1)
                    });
            } else {
                t.in_app.fetch_and(!1, Ordering::AcqRel);
            }
        }
        if inside {
            self.pool.wake_watcher();
        }
    }

    /// The next queued token, and whether more are queued after it.
    fn pop_ready(&self) -> Option<(u64, bool)> {
        let mut q = self.ready.lock().ok()?;
        let token = q.pop_front()?;
        Some((token, !q.is_empty()))
    }

    fn push_ready(&self, events: &[Event]) {
        if let Ok(mut q) = self.ready.lock() {
            q.extend(events.iter().map(tagged));
        }
    }

    /// Logs (and counts, with metrics) a request refused before the app: `conn`'s unread
    /// bytes start with it.
    pub fn log_refusal(&self, py: Python<'_>, conn: &Conn, err: &HttpError) {
        if let Some(m) = &self.metrics {
            m.refused(conn.buf.get(conn.pos..).unwrap_or_default(), err.status());
        }
        self.loggers.log(
            py,
            "info",
            &format!(
                "Refused a request from {}: {}",
                conn.remote_addr.bind(py),
                err
            ),
        );
        if let Some(access) = &self.access {
            let remote = conn.remote_addr.bind(py).to_string();
            let time = access.now();
            let rec = Record {
                remote: &remote,
                line: "-",
                status: err.status(),
                bytes: 0,
                elapsed: Duration::ZERO,
                request_headers: &[],
                response_headers: b"",
                environ: None,
                time: &time,
                pid: std::process::id(),
            };
            access.write(py, &self.loggers, &rec);
        }
    }

    fn accept(&self, py: Python<'_>, index: usize) {
        if self.listeners_closed.load(Ordering::Acquire) {
            return;
        }
        if self.accept_from(py, index) {
            // More may be waiting: come back to this listener after other work.
            if let Ok(mut q) = self.ready.lock() {
                q.push_back(LISTENER_BIT | index as u64);
            }
        }
    }

    /// Accepts up to [`ACCEPT_BATCH`] connections; true if more may be waiting.
    fn accept_from(&self, py: Python<'_>, index: usize) -> bool {
        let Some(listener) = self.listeners.get(index) else {
            return false;
        };
        for _ in 0..ACCEPT_BATCH {
            if self.at_connection_limit(py) {
                return false;
            }
            let (sock, peer) = match listener.accept() {
                Ok(v) => v,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    // EMFILE and friends: log and retry on the next event.
                    self.loggers
                        .log(py, "error", &format!("accept() failed: {e}"));
                    return false;
                }
            };
            set_nodelay(sock.fd());
            self.register(py, sock, peer, index);
        }
        true
    }

    /// Takes a new connection into the table and the epoll set.
    fn register(&self, py: Python<'_>, sock: Socket, peer: Peer, listener: usize) {
        let Some(slot_index) = self.slots.alloc() else {
            self.loggers.log(
                py,
                "warning",
                "connection table full; closing a new connection",
            );
            return;
        };
        let (addr, port, ip) = match &peer {
            Peer::Inet(a) => (peer.host(), peer.port(), Some(a.ip())),
            Peer::Unix => (String::new(), String::new(), None),
        };
        if let Some(m) = &self.metrics {
            m.connection_opened();
        }
        let token = self.slots.token(slot_index);
        let fd = sock.fd();
        let mut conn = Conn::new(
            sock,
            listener,
            PyString::new(py, &addr).unbind(),
            PyString::new(py, &port).unbind(),
            ip,
        );
        conn.token = token;
        conn.proxy_pending = self.cfg.proxy_protocol;
        conn.lowat = ip.is_some() && self.tls.is_none();
        conn.deadline = Some(Tick::now() + self.cfg.header_timeout);
        if let Some(slot) = self.slots.get(slot_index) {
            if let Ok(mut g) = slot.conn.lock() {
                *g = Some(conn);
            }
        }
        if let Err(e) = self.poller.add_conn(fd, token) {
            self.loggers
                .log(py, "error", &format!("epoll_ctl failed: {e}"));
            self.close_slot(slot_index);
        }
    }

    /// Hands the core a connection accepted elsewhere (the plaintext end of a TLS
    /// session's socket pair, from the terminator thread, which holds no GIL).
    pub fn adopt(&self, sock: Socket, peer: Peer, listener: usize) {
        if let Ok(mut inbox) = self.inbox.lock() {
            inbox.push((sock, peer, listener));
        }
        self.poller.wake();
    }

    /// Registers the connections [`adopt`](Self::adopt) queued.
    fn take_adopted(&self, py: Python<'_>) {
        let adopted = match self.inbox.lock() {
            Ok(mut inbox) if !inbox.is_empty() => std::mem::take(&mut *inbox),
            _ => return,
        };
        for (sock, peer, listener) in adopted {
            self.register(py, sock, peer, listener);
        }
    }

    /// Logs from a thread that does not hold the GIL (rare events only).
    pub fn log_unattached(&self, level: &str, msg: &str) {
        Python::attach(|py| self.loggers.log(py, level, msg));
    }

    /// The TLS terminator stopped accepting for good (see [`Self::close_listeners`]).
    pub fn mark_listeners_closed(&self) {
        self.listeners_closed.store(true, Ordering::Release);
        self.poller.wake();
    }

    /// Whether a graceful stop has run out of time.
    pub fn stop_expired(&self) -> bool {
        self.stop_deadline
            .get()
            .is_some_and(|d| *d <= Instant::now())
    }

    fn close_slot(&self, index: u32) {
        if let Some(slot) = self.slots.get(index) {
            if let Ok(mut g) = slot.conn.lock() {
                g.take();
            }
        }
        self.release_slot(index);
    }

    /// Backpressure: at `max_connections` open connections, stop accepting (new clients wait
    /// in the listen backlog) until [`release_slot`](Self::release_slot) frees one.
    fn at_connection_limit(&self, py: Python<'_>) -> bool {
        if self.slots.live() < self.cfg.max_connections {
            return false;
        }
        self.accept_paused.store(true, Ordering::Release);
        // A slot released between the check and the store would not have seen the flag.
        if self.slots.live() < self.cfg.max_connections
            && self.accept_paused.swap(false, Ordering::AcqRel)
        {
            return false;
        }
        let now = Instant::now();
        if let Ok(mut last) = self.last_full_warning.lock() {
            if last.is_none_or(|t| now.duration_since(t) >= FULL_WARNING_EVERY) {
                *last = Some(now);
                let msg = format!(
                    "{} connections open (max_connections): new connections wait in the \
                     listen backlog",
                    self.cfg.max_connections
                );
                self.loggers.log(py, "warning", &msg);
            }
        }
        true
    }

    /// Frees a connection's slot; resumes accepting if the connection limit had paused it.
    fn release_slot(&self, index: u32) {
        self.slots.release(index);
        if let Some(m) = &self.metrics {
            m.connection_closed();
        }
        if self.accept_paused.swap(false, Ordering::AcqRel) {
            if let Ok(mut q) = self.ready.lock() {
                q.extend((0..self.listeners.len()).map(|i| LISTENER_BIT | i as u64));
            }
            // The leader may be blocked in epoll_wait: the queue is read when it wakes.
            self.poller.wake();
        }
    }

    /// Serves a connection that became ready, unless another thread holds it (then
    /// that thread sees `pending` and serves it again when done).
    fn dispatch_conn(&self, py: Python<'_>, ctx: &mut ThreadCtx, token: u64) {
        let Some((index, slot)) = self.slots.by_token(token) else {
            return;
        };
        if token & HUP_BIT != 0 {
            slot.hup.store(true, Ordering::Release);
        }
        slot.pending.store(true, Ordering::Release);
        loop {
            let Ok(mut guard) = slot.conn.try_lock() else {
                return;
            };
            if !slot.pending.swap(false, Ordering::AcqRel) {
                return;
            }
            let next = match guard.as_mut() {
                Some(conn) => {
                    conn.drained = false;
                    // A load first: the swap is a locked instruction, and a hang-up is rare.
                    conn.peer_closed |=
                        slot.hup.load(Ordering::Acquire) && slot.hup.swap(false, Ordering::AcqRel);
                    serve(py, self, ctx, conn)
                }
                None => return,
            };
            if next == Next::Close {
                guard.take();
                drop(guard);
                self.release_slot(index);
                return;
            }
            if self.pool.leader.load(Ordering::Acquire) != ctx.index {
                // This thread goes idle next: what it held cannot wait for its flush.
                if let Some(conn) = guard.as_mut() {
                    let _ = conn.write_out();
                }
            }
            drop(guard);
            if !slot.pending.load(Ordering::Acquire) {
                return;
            }
        }
    }

    /// Writes the responses held by [`Deferred`], one `writev` per connection. One whose
    /// socket is full finishes at its next writable event.
    fn flush_deferred(&self) {
        for token in self.deferred.take() {
            let Some((_, slot)) = self.slots.by_token(token) else {
                continue;
            };
            let Ok(mut guard) = slot.conn.try_lock() else {
                // Its owner writes it before letting go unless it leads (then it flushes).
                self.deferred.push(token);
                continue;
            };
            if let Some(conn) = guard.as_mut() {
                if conn.token == token {
                    let _ = conn.write_out();
                }
            }
        }
    }

    fn dispatch(&self, py: Python<'_>, ctx: &mut ThreadCtx, token: u64) {
        if token == WAKE_TOKEN {
            self.poller.drain_wake();
            self.take_adopted(py);
        } else if token & LISTENER_BIT != 0 {
            self.accept(py, (token & !LISTENER_BIT) as usize);
        } else {
            self.dispatch_conn(py, ctx, token);
        }
    }

    /// Closes connections past their deadline. When stopping, also those that sit idle
    /// after at least one response (the client has no request in flight); a connection
    /// that has carried no request yet, or holds part of one, gets until the stop
    /// deadline to send it (it is then served, with `Connection: close`).
    fn sweep(&self, py: Python<'_>) {
        let now = Instant::now();
        let tick = Tick::now();
        let stopping = self.is_stopping();
        let stop_deadline = self.stop_deadline.get().copied();
        for index in 0..self.slots.high_water() {
            let Some(slot) = self.slots.get(index) else {
                continue;
            };
            let Ok(mut guard) = slot.conn.try_lock() else {
                continue;
            };
            let Some(conn) = guard.as_ref() else {
                continue;
            };
            if conn.body_wait.expired(tick) {
                // A body slower than BODY_WAIT: call the app, which reads it as it comes.
                if let Ok(mut q) = self.ready.lock() {
                    q.push_back(self.slots.token(index));
                }
                continue;
            }
            let expired = conn.deadline.is_some_and(|d| d <= tick);
            let close = if !stopping {
                expired
            } else if conn.lingering.is_some() || stop_deadline.is_some_and(|d| d <= now) {
                true
            } else if conn.has_output() {
                // A response still going out to a slow client: not idle.
                expired
            } else {
                match socket::has_input(conn.sock.fd()) {
                    // A request is arriving: let the loop serve it.
                    Some(true) => {
                        if let Ok(mut q) = self.ready.lock() {
                            q.push_back(self.slots.token(index));
                        }
                        false
                    }
                    Some(false) => true,
                    None => expired || (conn.requests > 0 && !conn.has_partial_request()),
                }
            };
            if close {
                if conn.has_partial_request() && expired && !conn.has_output() {
                    refuse(conn, &HttpError::Timeout);
                    self.log_refusal(py, conn, &HttpError::Timeout);
                }
                guard.take();
                drop(guard);
                self.release_slot(index);
            }
        }
    }

    fn maybe_sweep(&self, py: Python<'_>) {
        let due = match self.next_sweep.try_lock() {
            Ok(mut next) if Tick::now() >= *next => {
                *next = Tick::now() + SWEEP_EVERY;
                true
            }
            _ => false,
        };
        if due {
            self.sweep(py);
            // Under steady load the loop never goes idle: lines still reach the log.
            if let Some(access) = &self.access {
                access.flush();
            }
        }
    }

    /// Stops accepting for good: takes the connections the kernel already completed (a
    /// close would reset them; they are served like any connection during the stop), then
    /// closes this process's listening descriptors.
    fn close_listeners(&self, py: Python<'_>) {
        // With TLS the terminator thread owns the listening sockets (and sets the flag).
        if self.tls.is_some() || self.listeners_closed.swap(true, Ordering::AcqRel) {
            return;
        }
        for (index, l) in self.listeners.iter().enumerate() {
            self.poller.remove(l.fd());
            while self.accept_from(py, index) {}
            l.close();
        }
    }

    /// The leader's loop; returns when this thread is no longer the leader.
    fn lead(&self, py: Python<'_>, ctx: &mut ThreadCtx) {
        loop {
            let stopping = self.is_stopping();
            if stopping {
                // Graceful: no new connections; the loop goes on serving those with a
                // request on its way until none is left or the stop deadline passes.
                self.close_listeners(py);
                // Connections the TLS terminator handed over before it stopped accepting
                // are served too: read the flag first, then take what it queued.
                let accepting = !self.listeners_closed.load(Ordering::Acquire);
                self.take_adopted(py);
                if (self.slots.live() == 0 && !accepting) || self.stop_expired() {
                    self.sweep(py);
                    return;
                }
            }
            if self.pool.leader.load(Ordering::Acquire) != ctx.index {
                // Lost leadership while in the app. Take it back if the leader is
                // itself inside the app (probably blocked); otherwise go idle.
                let l = self.pool.leader.load(Ordering::Acquire);
                let leader_busy = l != NO_LEADER
                    && self
                        .pool
                        .threads
                        .get(l)
                        .is_some_and(|t| t.current().is_some());
                if !(leader_busy
                    && self
                        .pool
                        .leader
                        .compare_exchange(l, ctx.index, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok())
                {
                    return;
                }
            }
            if let Some((token, more)) = self.pop_ready() {
                if self.deferred.due() {
                    self.flush_deferred();
                }
                ctx.more_ready = more;
                self.dispatch(py, ctx, token);
                continue;
            }
            if self.deferred.any() {
                self.flush_deferred();
            }
            if stopping {
                self.sweep(py);
            } else {
                self.maybe_sweep(py);
            }
            ctx.events.clear();
            let got = self.poller.wait(&mut ctx.events, 0).unwrap_or(0);
            if got == 0 {
                // Nothing to do: write out queued access-log lines, release the GIL and
                // block in epoll.
                if let Some(access) = &self.access {
                    access.flush();
                }
                let mut events = std::mem::take(&mut ctx.events);
                let wait = if stopping { STOP_TICK } else { SWEEP_EVERY };
                py.detach(|| {
                    let _ = self.poller.wait(&mut events, wait.as_millis() as i32);
                });
                ctx.events = events;
            }
            if let Some((first, rest)) = ctx.events.split_first() {
                let first = tagged(first);
                if !rest.is_empty() {
                    self.push_ready(rest);
                }
                ctx.more_ready = !rest.is_empty();
                self.dispatch(py, ctx, first);
            }
        }
    }

    /// An app thread's whole life.
    pub fn run_thread(&self, index: usize) {
        Python::attach(|py| {
            let on_write: OnWrite = match self.pool.threads.get(index) {
                Some(t) => {
                    let (in_app, last) = (t.in_app.clone(), AtomicU64::new(0));
                    Arc::new(move || write_progress(&in_app, &last))
                }
                None => Arc::new(|| {}),
            };
            let mut ctx = ThreadCtx {
                index,
                events: Vec::with_capacity(256),
                line: String::with_capacity(256),
                scratch: Vec::new(),
                more_ready: false,
                spare_start_response: None,
                on_write,
            };
            if let Some(t) = self.pool.threads.get(index) {
                let _ = t.handle.set(std::thread::current());
                let mut clock: libc::clockid_t = 0;
                // SAFETY: querying our own thread's CPU clock id.
                if unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) } == 0 {
                    t.clock.store(clock, Ordering::Release);
                }
            }
            loop {
                if self.pool.leader.load(Ordering::Acquire) == index {
                    self.lead(py, &mut ctx);
                }
                if self.is_stopping() {
                    break;
                }
                if self.pool.leader.load(Ordering::Acquire) == index {
                    continue;
                }
                if let Ok(mut idle) = self.pool.idle.lock() {
                    if !idle.contains(&index) {
                        idle.push(index);
                    }
                }
                py.detach(|| {
                    while self.pool.leader.load(Ordering::Acquire) != index && !self.is_stopping() {
                        std::thread::park();
                    }
                });
                if let Ok(mut idle) = self.pool.idle.lock() {
                    idle.retain(|&i| i != index);
                }
            }
        });
        if let Ok(mut alive) = self.pool.alive.lock() {
            *alive = alive.saturating_sub(1);
        }
        self.pool.exited.notify_all();
    }
}

/// The token to queue for an event: a hang-up is flagged so that a FIN that came
/// with the last bytes is not missed (a short read would otherwise mean "drained").
fn tagged(e: &Event) -> u64 {
    if e.hangup && e.token & LISTENER_BIT == 0 && e.token != WAKE_TOKEN {
        e.token | HUP_BIT
    } else {
        e.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_progress_starts_a_new_exchange_at_most_every_mark_and_only_inside_one() {
        let (in_app, last) = (AtomicU64::new(5 << 1 | 1), AtomicU64::new(0));
        write_progress(&in_app, &last);
        assert_eq!(
            in_app.load(Ordering::Relaxed),
            6 << 1 | 1,
            "the first block marks"
        );
        write_progress(&in_app, &last);
        assert_eq!(
            in_app.load(Ordering::Relaxed),
            6 << 1 | 1,
            "not again within the mark"
        );
        last.store(
            Tick::now().as_nanos() - PROGRESS_MARK.as_nanos() as u64,
            Ordering::Relaxed,
        );
        write_progress(&in_app, &last);
        assert_eq!(in_app.load(Ordering::Relaxed), 7 << 1 | 1, "again after it");
        // Outside an exchange (a write() kept past its end), nothing moves.
        in_app.store(7 << 1, Ordering::Relaxed);
        last.store(0, Ordering::Relaxed);
        write_progress(&in_app, &last);
        assert_eq!(in_app.load(Ordering::Relaxed), 7 << 1);
    }
}
