//! The heartbeat: a record a supervisor reads to tell a live worker from a stuck one.
//!
//! A thread of its own (it never takes the GIL, so it keeps beating while an app holds
//! the GIL in C code) rewrites this process's 512-byte record in a shared file every
//! [`BEAT`] with `pwrite`. The layout (little-endian), documented for the Python
//! supervisor in docs/deployment.md:
//!
//! | offset | type | meaning |
//! |---|---|---|
//! | 0 | u64 | update counter |
//! | 8 | u64 | `CLOCK_MONOTONIC` time of this write, ns |
//! | 16 | u64 | `CLOCK_MONOTONIC` time the oldest request now in the app started, ns (0: none) |
//! | 24 | u64 | requests taken so far |
//! | 32 | u32 | pid |
//! | 64..320 | bytes | that oldest request's line, NUL-padded |
//!
//! Start times come from sampling: a thread's exchange counter seen unchanged across
//! samples is the same request, first seen at the earlier sample (so they are early by
//! at most one beat's error in the request's favour, never late).
//!
//! With metrics (`--metrics-bind`), a worker's slot in the same file is this record
//! followed, at offset [`RECORD`] (512), by its metrics region (`metrics_offset`, see
//! [`super::metrics`]): counters the request path adds to in place, through a shared
//! mapping, and the master reads at each scrape. This thread does not copy them: they
//! need no beat, and they stay readable after the process died.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::pool::Shared;

pub const RECORD: usize = 512;
const BEAT: Duration = Duration::from_millis(250);
const LINE_AT: usize = 64;
const LINE_MAX: usize = 256;

/// `CLOCK_MONOTONIC` in nanoseconds (the clock Python's `time.monotonic_ns()` reads).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime with a valid clock id and timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One record, encoded.
pub fn encode(
    count: u64,
    now: u64,
    oldest: u64,
    served: u64,
    pid: u32,
    line: &str,
) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[0..8].copy_from_slice(&count.to_le_bytes());
    r[8..16].copy_from_slice(&now.to_le_bytes());
    r[16..24].copy_from_slice(&oldest.to_le_bytes());
    r[24..32].copy_from_slice(&served.to_le_bytes());
    r[32..36].copy_from_slice(&pid.to_le_bytes());
    let line = line.as_bytes();
    let n = line.len().min(LINE_MAX - 1);
    r[LINE_AT..LINE_AT + n].copy_from_slice(&line[..n]);
    r
}

fn write_at(fd: RawFd, offset: u64, record: &[u8; RECORD]) {
    // SAFETY: writing our own buffer to a descriptor the supervisor handed us.
    unsafe {
        libc::pwrite(fd, record.as_ptr().cast(), RECORD, offset as libc::off_t);
    }
}

/// The heartbeat thread's loop; returns once `done` is set.
pub fn run(shared: Arc<Shared>, fd: RawFd, offset: u64, done: Arc<AtomicBool>) {
    let pool = &shared.pool;
    // Per app thread: the exchange counter last seen, and when it was first seen.
    let mut seen: Vec<(u64, u64)> = vec![(0, 0); pool.threads.len()];
    let pid = std::process::id();
    let mut count = 0u64;
    while !done.load(Ordering::Acquire) {
        let now = monotonic_ns();
        let mut oldest: Option<(u64, usize)> = None;
        for (i, t) in pool.threads.iter().enumerate() {
            let Some(s) = seen.get_mut(i) else { continue };
            let Some(seq) = t.current() else {
                *s = (0, 0);
                continue;
            };
            if s.0 != seq {
                *s = (seq, now);
            }
            if oldest.is_none_or(|(at, _)| s.1 < at) {
                oldest = Some((s.1, i));
            }
        }
        let line = oldest
            .and_then(|(_, i)| pool.threads.get(i))
            .and_then(|t| t.line.lock().ok().map(|l| l.clone()))
            .unwrap_or_default();
        count += 1;
        let record = encode(
            count,
            now,
            oldest.map_or(0, |(at, _)| at),
            shared.served.load(Ordering::Relaxed),
            pid,
            &line,
        );
        write_at(fd, offset, &record);
        std::thread::park_timeout(BEAT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_layout() {
        let r = encode(3, 1_000, 400, 7, 42, "GET /hang HTTP/1.1");
        assert_eq!(u64::from_le_bytes(r[0..8].try_into().unwrap()), 3);
        assert_eq!(u64::from_le_bytes(r[8..16].try_into().unwrap()), 1_000);
        assert_eq!(u64::from_le_bytes(r[16..24].try_into().unwrap()), 400);
        assert_eq!(u64::from_le_bytes(r[24..32].try_into().unwrap()), 7);
        assert_eq!(u32::from_le_bytes(r[32..36].try_into().unwrap()), 42);
        assert_eq!(&r[64..82], b"GET /hang HTTP/1.1");
        assert_eq!(r[82], 0);
    }

    #[test]
    fn long_lines_are_cut_and_stay_terminated() {
        let long = "x".repeat(1000);
        let r = encode(1, 1, 0, 0, 1, &long);
        assert_eq!(r[LINE_AT + LINE_MAX - 2], b'x');
        assert_eq!(r[LINE_AT + LINE_MAX - 1], 0);
    }
}
