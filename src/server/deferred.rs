//! Held responses: written together when the loop runs out of ready work.
//!
//! A small complete response on a keep-alive connection, finished while other ready
//! connections wait, is not written when the app finishes. The leader keeps it in the
//! connection (`Conn::out`) and notes the connection here, then serves the next ready
//! connection. (With nothing queued behind it, a response is written at once.) When no ready work is left, before it
//! polls, it writes every held response, one `writev` per connection. The same happens
//! earlier if the oldest has waited [`MAX_AGE`] (a slow app after it), and before anything
//! else is written on that connection.
//!
//! Why: writing a response wakes the client when it sleeps, and a wake-up of a thread on
//! another CPU is the dearest part of that write (an inter-processor interrupt; a VM exit in
//! a virtual machine). Responses written back to back find the client already awake, and
//! it reads them in one go and sends its next requests together. On the flask benchmark
//! this took the server's kernel time per request from ~17 to ~10 µs. A response waits at
//! most for the requests ready with it, and never for an app that blocks: the next leader
//! flushes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::clock::Tick;

/// The longest a held response waits while the loop still has ready work, on the
/// coarse clock ([`Tick`]): up to one scheduler tick (≤ 4 ms) more.
pub const MAX_AGE: Duration = Duration::from_millis(2);

/// The connections holding a response, by epoll token.
#[derive(Debug, Default)]
pub struct Deferred {
    tokens: Mutex<Vec<u64>>,
    /// When the oldest was held (a [`Tick`] in ns); 0: none.
    since: AtomicU64,
}

impl Deferred {
    /// Notes that the connection with `token` holds a response.
    pub fn push(&self, token: u64) {
        if let Ok(mut t) = self.tokens.lock() {
            if t.is_empty() {
                self.since
                    .store(Tick::now().as_nanos().max(1), Ordering::Relaxed);
            }
            t.push(token);
        }
    }

    /// Whether the oldest held response has waited [`MAX_AGE`].
    pub fn due(&self) -> bool {
        let since = self.since.load(Ordering::Relaxed);
        since != 0 && Tick::now().as_nanos().saturating_sub(since) >= MAX_AGE.as_nanos() as u64
    }

    /// Whether any response is held.
    pub fn any(&self) -> bool {
        self.since.load(Ordering::Relaxed) != 0
    }

    /// Takes the noted connections, oldest first.
    pub fn take(&self) -> Vec<u64> {
        match self.tokens.lock() {
            Ok(mut t) => {
                self.since.store(0, Ordering::Relaxed);
                std::mem::take(&mut *t)
            }
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_in_order_and_empties() {
        let d = Deferred::default();
        assert!(!d.any());
        d.push(3);
        d.push(7);
        assert!(d.any());
        assert_eq!(d.take(), vec![3, 7]);
        assert!(!d.any());
        assert!(d.take().is_empty());
    }

    #[test]
    fn is_due_after_max_age() {
        let d = Deferred::default();
        assert!(!d.due());
        d.push(1);
        assert!(!d.due());
        // The coarse clock lags by up to a tick (10 ms at CONFIG_HZ=100).
        std::thread::sleep(MAX_AGE + Duration::from_millis(11));
        assert!(d.due());
        d.take();
        assert!(!d.due());
    }
}
