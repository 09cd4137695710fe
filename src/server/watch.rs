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
    /// Exchanges the leader had started, and whether it was inside the last.
    seq: u64,
    inside: bool,
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
        let (seq, inside) = info.exchange();
        let Some(cpu) = cpu_ns(info.clock.load(Ordering::Acquire)) else {
            continue;
        };
        let now = Instant::now();
        let back_off = (interval * 2).min(MAX_INTERVAL);
        match &last {
            Some(s) if s.leader == leader => {
                let started = seq.wrapping_sub(s.seq);
                // The leader spent most of the time since the last look off the CPU.
                let off_cpu =
                    cpu.saturating_sub(s.cpu) * 2 < now.duration_since(s.at).as_nanos() as u64;
                if inside && s.inside && started == 0 && off_cpu {
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
                if started == 0 && !inside {
                    // Nothing ran in the app since the last look.
                    idle_rounds += 1;
                    if idle_rounds >= IDLE_ROUNDS {
                        // Sleep until a thread enters the app (it clears the flag and
                        // wakes us).
                        pool.watcher_dormant.store(true, Ordering::Release);
                        while pool.watcher_dormant.load(Ordering::Acquire) && !shared.is_stopping()
                        {
                            std::thread::park_timeout(Duration::from_secs(1));
                        }
                        idle_rounds = 0;
                        interval = MIN_INTERVAL;
                        last = None;
                        continue;
                    }
                    interval = back_off;
                } else if inside && started <= FRESH && off_cpu {
                    // The leader started a new request or two since the last look and
                    // spent most of the time off the CPU: its requests block (a database
                    // call in every request), so look again soon. Busy leaders, running
                    // many short requests or long CPU-bound ones, back off instead.
                    idle_rounds = 0;
                    interval = MIN_INTERVAL;
                } else {
                    // Requests flow, or one keeps using the CPU; a sample that finds the
                    // leader between two requests says the same.
                    idle_rounds = 0;
                    interval = back_off;
                }
            }
            _ => {
                idle_rounds = 0;
                interval = MIN_INTERVAL;
            }
        }
        last = Some(Sample {
            leader,
            seq,
            inside,
            cpu,
            at: now,
        });
    }
}
