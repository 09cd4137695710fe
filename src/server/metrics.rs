//! Request metrics (`--metrics-bind`): counters in atomics, for a Prometheus endpoint.
//!
//! Each process keeps its numbers in one flat array of `u64` words. The request path
//! only adds to them (relaxed atomic adds: a few per request, one per connection opened
//! or closed); nothing is formatted or sent from here. Who reads them:
//!
//! - a single process: Python's endpoint thread, through `Server.metrics()`;
//! - a worker under a master: the array lives in the worker's slot of the shared
//!   heartbeat file (`metrics_offset` in `heartbeat_fd`), mapped `MAP_SHARED`, so the
//!   master reads the live values with [`read_metrics`] at each scrape, with no
//!   publishing step, and still reads them after the worker died (even by SIGKILL): it
//!   folds those last values into its own totals, so no count is lost or goes back.
//!
//! Layout (native-endian `u64` words, [`SIZE`] bytes; docs/deployment.md, "Metrics"):
//!
//! | word | meaning |
//! |---|---|
//! | 0 | requests in flight (admitted, response not finished) |
//! | 1 | open connections |
//! | 2 | sum of request durations, ns |
//! | 3..17 | request-duration histogram: one count per bucket of [`BOUNDS_NS`], then +Inf (not cumulative) |
//! | 17.. | requests by method and status: `17 + method * 900 + (status - 100)`, method in [`METHODS`] order, status 100..=999 |
//!
//! A request is counted when its exchange ends, with the status sent (a 500 for an app
//! that failed, the refusal's status for a body refused mid-stream). A request refused
//! before the app (400, 408, 413, 414, 431, 501, 505...) counts with its status and a
//! duration of 0; its method is read from the start of what the client sent.

use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// The method label's values: the standard methods, then `other` (so a client cannot
/// make up label values).
pub const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "other",
];
const OTHER_METHOD: usize = METHODS.len() - 1;
const STATUS_MIN: u16 = 100;
const STATUS_MAX: u16 = 999;
const STATUSES: usize = (STATUS_MAX - STATUS_MIN + 1) as usize;

/// Upper bounds of the histogram's buckets, ns (1 ms .. 10 s).
pub const BOUNDS_NS: [u64; 13] = [
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];
const BUCKETS: usize = BOUNDS_NS.len() + 1;

const IN_FLIGHT: usize = 0;
const CONNECTIONS: usize = 1;
const DURATION_SUM: usize = 2;
const HISTOGRAM: usize = 3;
const REQUESTS: usize = HISTOGRAM + BUCKETS;
const WORDS: usize = REQUESTS + METHODS.len() * STATUSES;
/// Bytes of one process's metrics region.
pub const SIZE: usize = WORDS * 8;

/// `CLOCK_MONOTONIC` in ns: a request's start for [`Metrics::finish_since`] (one vDSO call,
/// without `Instant`'s checked arithmetic).
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime with a valid clock id and timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// The index of a method in [`METHODS`] (`other` for anything else).
#[inline]
pub fn method_index(method: &[u8]) -> usize {
    match method {
        b"GET" => 0,
        b"HEAD" => 1,
        b"POST" => 2,
        b"PUT" => 3,
        b"DELETE" => 4,
        b"CONNECT" => 5,
        b"OPTIONS" => 6,
        b"TRACE" => 7,
        b"PATCH" => 8,
        _ => OTHER_METHOD,
    }
}

/// The method of a request refused before it was parsed: what precedes the first space.
fn method_of_raw(head: &[u8]) -> usize {
    let head = &head[..head.len().min(8)];
    match head.iter().position(|&b| b == b' ') {
        Some(n) => method_index(&head[..n]),
        None => OTHER_METHOD,
    }
}

#[inline]
fn bucket_index(ns: u64) -> usize {
    BOUNDS_NS
        .iter()
        .position(|&b| ns <= b)
        .unwrap_or(BOUNDS_NS.len())
}

/// Where the words live.
enum Store {
    Owned(#[allow(dead_code)] Box<[AtomicU64]>),
    /// A `MAP_SHARED` mapping of the heartbeat file: its start and length.
    Mapped(*mut libc::c_void, usize),
}

/// One process's counters.
pub struct Metrics {
    words: NonNull<AtomicU64>,
    store: Store,
}

// SAFETY: the words are atomics; the mapping is only unmapped on drop.
unsafe impl Send for Metrics {}
// SAFETY: as above; every access goes through `&AtomicU64`.
unsafe impl Sync for Metrics {}

impl Metrics {
    /// Counters in this process's own memory.
    pub fn private() -> Metrics {
        let mut owned: Box<[AtomicU64]> = (0..WORDS).map(|_| AtomicU64::new(0)).collect();
        let words = NonNull::new(owned.as_mut_ptr()).unwrap_or(NonNull::dangling());
        Metrics {
            words,
            store: Store::Owned(owned),
        }
    }

    /// Counters at `offset` in the shared file `fd` (the region must exist, 8-aligned).
    pub fn shared(fd: RawFd, offset: u64) -> io::Result<Metrics> {
        let (base, len, delta) = map(fd, offset, true)?;
        // SAFETY: `map` checked the region lies inside the mapping and is 8-aligned.
        let words = unsafe { base.cast::<u8>().add(delta).cast::<AtomicU64>() };
        Ok(Metrics {
            words: NonNull::new(words).ok_or_else(|| io::Error::other("null mapping"))?,
            store: Store::Mapped(base, len),
        })
    }

    #[inline]
    fn words(&self) -> &[AtomicU64] {
        // SAFETY: `words` points at WORDS atomics that live as long as `self`.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr(), WORDS) }
    }

    #[inline]
    fn add(&self, word: usize, n: u64) {
        if let Some(w) = self.words().get(word) {
            w.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// A request was admitted (its head is parsed; the app is about to run).
    #[inline]
    pub fn begin(&self) {
        self.add(IN_FLIGHT, 1);
    }

    /// An admitted request ended with `status` after `elapsed`.
    #[inline]
    pub fn finish(&self, method: usize, status: u16, elapsed: Duration) {
        if let Some(w) = self.words().get(IN_FLIGHT) {
            w.fetch_sub(1, Ordering::Relaxed);
        }
        self.observe(
            method,
            status,
            elapsed.as_nanos().min(u64::MAX as u128) as u64,
        );
    }

    /// An admitted request that started at `start` ([`now_ns`]) ended with `status`.
    #[inline]
    pub fn finish_since(&self, method: usize, status: u16, start: u64) {
        if let Some(w) = self.words().get(IN_FLIGHT) {
            w.fetch_sub(1, Ordering::Relaxed);
        }
        self.observe(method, status, now_ns().saturating_sub(start));
    }

    /// A request refused before the app: `head` is what the client sent, from its start.
    pub fn refused(&self, head: &[u8], status: u16) {
        self.observe(method_of_raw(head), status, 0);
    }

    /// A request refused after it was parsed (but before the app ran).
    pub fn refused_parsed(&self, method: usize, status: u16) {
        self.observe(method, status, 0);
    }

    #[inline]
    fn observe(&self, method: usize, status: u16, ns: u64) {
        if !(STATUS_MIN..=STATUS_MAX).contains(&status) {
            return; // no status was ever set (every failure path sends a 500)
        }
        self.add(
            REQUESTS + method.min(OTHER_METHOD) * STATUSES + usize::from(status - STATUS_MIN),
            1,
        );
        self.add(HISTOGRAM + bucket_index(ns), 1);
        self.add(DURATION_SUM, ns);
    }

    #[inline]
    pub fn connection_opened(&self) {
        self.add(CONNECTIONS, 1);
    }

    #[inline]
    pub fn connection_closed(&self) {
        if let Some(w) = self.words().get(CONNECTIONS) {
            w.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The current values, as `Server.metrics()` and `read_metrics()` return them.
    pub fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        snapshot(py, self.words())
    }
}

impl Drop for Metrics {
    fn drop(&mut self) {
        if let Store::Mapped(base, len) = self.store {
            // SAFETY: unmapping our own mapping; no reference to it outlives `self`.
            unsafe { libc::munmap(base, len) };
        }
    }
}

/// Maps the region at `offset` in `fd`: (mapping start, mapping length, offset of the
/// region in the mapping).
fn map(fd: RawFd, offset: u64, write: bool) -> io::Result<(*mut libc::c_void, usize, usize)> {
    if !offset.is_multiple_of(8) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "metrics offset not 8-aligned",
        ));
    }
    // SAFETY: fstat into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if (st.st_size as u64) < offset + SIZE as u64 {
        // Touching a page past the end of the file would be SIGBUS.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the metrics region lies past the end of the file",
        ));
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    let start = offset - offset % page;
    let delta = (offset - start) as usize;
    let len = delta + SIZE;
    let prot = if write {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_READ
    };
    // SAFETY: a fresh shared mapping of a file we were handed; checked below.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED,
            fd,
            start as libc::off_t,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok((base, len, delta))
}

fn snapshot<'py>(py: Python<'py>, words: &[AtomicU64]) -> PyResult<Bound<'py, PyDict>> {
    let load = |i: usize| words.get(i).map_or(0, |w| w.load(Ordering::Relaxed));
    let d = PyDict::new(py);
    let requests = PyDict::new(py);
    for (m, name) in METHODS.iter().enumerate() {
        for s in 0..STATUSES {
            let n = load(REQUESTS + m * STATUSES + s);
            if n != 0 {
                requests.set_item((*name, s as u16 + STATUS_MIN), n)?;
            }
        }
    }
    d.set_item("requests", requests)?;
    let buckets: Vec<u64> = (0..BUCKETS).map(|b| load(HISTOGRAM + b)).collect();
    d.set_item("duration_buckets", PyList::new(py, buckets)?)?;
    let bounds: Vec<f64> = BOUNDS_NS.iter().map(|&b| b as f64 / 1e9).collect();
    d.set_item("duration_bounds", PyList::new(py, bounds)?)?;
    d.set_item("duration_sum_ns", load(DURATION_SUM))?;
    // Gauges are stored as wrapping u64s; read them signed.
    d.set_item("in_flight", load(IN_FLIGHT) as i64)?;
    d.set_item("connections", load(CONNECTIONS) as i64)?;
    Ok(d)
}

/// Reads the metrics region a worker keeps at `offset` in the shared file `fd` (the
/// master's view; the worker may be running, or dead: its last values stay there).
#[pyfunction]
pub fn read_metrics<'py>(py: Python<'py>, fd: RawFd, offset: u64) -> PyResult<Bound<'py, PyDict>> {
    let (base, len, delta) =
        map(fd, offset, false).map_err(|e| PyOSError::new_err(e.to_string()))?;
    // SAFETY: `map` checked the region lies inside the mapping and is 8-aligned; the words
    // are only read, atomically, and the mapping is unmapped after.
    let result = unsafe {
        let words = base.cast::<u8>().add(delta).cast::<AtomicU64>();
        snapshot(py, std::slice::from_raw_parts(words, WORDS))
    };
    // SAFETY: our own mapping, no longer referenced.
    unsafe { libc::munmap(base, len) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(m: &Metrics, i: usize) -> u64 {
        m.words()[i].load(Ordering::Relaxed)
    }

    #[test]
    fn layout_is_what_the_docs_say() {
        assert_eq!(BUCKETS, 14);
        assert_eq!(REQUESTS, 17);
        assert_eq!(SIZE, (17 + 10 * 900) * 8);
        assert_eq!(METHODS[OTHER_METHOD], "other");
    }

    #[test]
    fn a_request_adds_to_its_method_status_and_bucket() {
        let m = Metrics::private();
        m.begin();
        assert_eq!(word(&m, IN_FLIGHT), 1);
        m.finish(method_index(b"POST"), 404, Duration::from_millis(3));
        assert_eq!(word(&m, IN_FLIGHT), 0);
        assert_eq!(word(&m, REQUESTS + 2 * STATUSES + 304), 1);
        assert_eq!(word(&m, HISTOGRAM + 2), 1, "3 ms is in the 5 ms bucket");
        assert_eq!(word(&m, DURATION_SUM), 3_000_000);
    }

    #[test]
    fn buckets_include_their_upper_bound_and_end_with_inf() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(1_000_000), 0);
        assert_eq!(bucket_index(1_000_001), 1);
        assert_eq!(bucket_index(10_000_000_000), 12);
        assert_eq!(bucket_index(10_000_000_001), 13);
    }

    #[test]
    fn methods_are_bounded() {
        assert_eq!(method_index(b"GET"), 0);
        assert_eq!(method_index(b"PATCH"), 8);
        assert_eq!(method_index(b"get"), OTHER_METHOD);
        assert_eq!(method_index(b"PROPFIND"), OTHER_METHOD);
        assert_eq!(method_of_raw(b"GET / HTTP/1.1\r\n"), 0);
        assert_eq!(method_of_raw(b"\x16\x03\x01 garbage"), OTHER_METHOD);
        assert_eq!(method_of_raw(b"GETTINGLONG / HTTP/1.1"), OTHER_METHOD);
        assert_eq!(method_of_raw(b""), OTHER_METHOD);
    }

    #[test]
    fn refusals_count_with_zero_duration_and_odd_statuses_do_not_count() {
        let m = Metrics::private();
        m.refused(b"PUT /x HTTP/1.1\r\nBad", 400);
        assert_eq!(word(&m, REQUESTS + 3 * STATUSES + 300), 1);
        assert_eq!(word(&m, HISTOGRAM), 1);
        m.refused(b"junk", 0);
        let total: u64 = (0..BUCKETS).map(|b| word(&m, HISTOGRAM + b)).sum();
        assert_eq!(total, 1);
    }

    #[test]
    fn shared_counters_are_seen_through_the_file() {
        let fd = unsafe { libc::memfd_create(c"metrics-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        let offset = 4096 + 512;
        assert_eq!(
            unsafe { libc::ftruncate(fd, (offset + SIZE + 4096) as libc::off_t) },
            0
        );
        {
            let m = Metrics::shared(fd, offset as u64).unwrap();
            m.connection_opened();
            m.finish(0, 200, Duration::from_micros(5));
        }
        // The values stay in the file after the mapping is gone (a dead worker's).
        let again = Metrics::shared(fd, offset as u64).unwrap();
        assert_eq!(word(&again, CONNECTIONS), 1);
        assert_eq!(word(&again, REQUESTS + 100), 1);
        assert_eq!(
            word(&again, IN_FLIGHT),
            u64::MAX,
            "finish without begin: -1"
        );
        assert!(Metrics::shared(fd, 4).is_err(), "not aligned");
        assert!(
            Metrics::shared(fd, (offset + 8192) as u64).is_err(),
            "past the end"
        );
        unsafe { libc::close(fd) };
    }
}
