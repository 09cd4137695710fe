//! The watcher: notices when the leading thread is blocked inside the app and hands
//! leadership to an idle thread, so one blocking request never stalls the others.
//!
//! It never touches the GIL. It samples the leader's CPU-time clock: a leader that
//! stays inside the same exchange while its clock does not advance is waiting (on a
//! socket, a lock, `time.sleep` …), having released the GIL. While the leader runs
//! many short requests between two samples, or one long request that keeps using the
//! CPU, the watcher backs off (up to 2 ms) so it costs next to nothing; when the leader
//! has just started a request or two (apps that block early, on a database call, look
//! like this), and after a hand-over, it samples again quickly. With nothing in the app
//! it sleeps until woken.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pool::Shared;

const MIN_INTERVAL: Duration = Duration::from_micros(50);
const MAX_INTERVAL: Duration = Duration::from_millis(2);
/// A leader that started at most this many requests since the last sample is taking
/// them slowly: the watcher keeps looking closely.
const FRESH: u64 = 2;
/// Idle samples before the watcher goes dormant.
const IDLE_ROUNDS: u32 = 20;

/// CPU time consumed by the thread owning `clock`, in nanoseconds.
fn cpu_ns(clock: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime on a clock id obtained from pthread_getcpuclockid.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

struct Sample {
    leader: usize,
    seq: u64,
    cpu: u64,
    at: Instant,
}

/// The watcher thread's loop; returns when the server stops.
pub fn run(shared: Arc<Shared>) {
    let pool = &shared.pool;
    let _ = pool.watcher.set(std::thread::current());
    let mut interval = MIN_INTERVAL;
    let mut last: Option<Sample> = None;
    let mut idle_rounds = 0u32;
    while !shared.is_stopping() {
        std::thread::park_timeout(interval);
        let leader = pool.leader.load(Ordering::Acquire);
        let Some(info) = pool.threads.get(leader) else {
            continue;
        };
        let seq = info.in_app.load(Ordering::Acquire);
        if seq == 0 {
            last = None;
            idle_rounds += 1;
            interval = (interval * 2).min(MAX_INTERVAL);
            if idle_rounds >= IDLE_ROUNDS {
                // Sleep until a thread enters the app (it clears the flag and wakes us).
                pool.watcher_dormant.store(true, Ordering::Release);
                while pool.watcher_dormant.load(Ordering::Acquire) && !shared.is_stopping() {
                    std::thread::park_timeout(Duration::from_secs(1));
                }
                idle_rounds = 0;
                interval = MIN_INTERVAL;
            }
            continue;
        }
        idle_rounds = 0;
        let Some(cpu) = cpu_ns(info.clock.load(Ordering::Acquire)) else {
            continue;
        };
        let now = Instant::now();
        match &last {
            Some(s) if s.leader == leader && s.seq == seq => {
                let wall = now.duration_since(s.at).as_nanos() as u64;
                let used = cpu.saturating_sub(s.cpu);
                if used * 2 < wall {
                    // Stuck in one exchange without using the CPU: blocked.
                    let next = pool.idle.lock().ok().and_then(|mut idle| idle.pop());
                    if let Some(next) = next {
                        if !pool.hand_over(leader, next) {
                            if let Ok(mut idle) = pool.idle.lock() {
                                idle.push(next);
                            }
                        }
                    }
                    interval = MIN_INTERVAL;
                    last = None;
                    continue;
                }
                interval = (interval * 2).min(MAX_INTERVAL);
            }
            Some(s)
                if s.leader == leader
                    && seq.wrapping_sub(s.seq) <= FRESH
                    && cpu.saturating_sub(s.cpu) * 2
                        < now.duration_since(s.at).as_nanos() as u64 =>
            {
                // The leader started a new request or two since the last look and spent
                // most of the time off the CPU: its requests block (a database call in
                // every request), so look again soon. Busy leaders, running many short
                // requests or long CPU-bound ones, back off instead.
                interval = MIN_INTERVAL;
            }
            Some(s) if s.leader == leader => interval = (interval * 2).min(MAX_INTERVAL),
            _ => interval = MIN_INTERVAL,
        }
        last = Some(Sample {
            leader,
            seq,
            cpu,
            at: now,
        });
    }
}
