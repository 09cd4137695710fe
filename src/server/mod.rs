//! The server: the `Server` class Python drives, the app-thread pool, the watcher,
//! and per-connection serving.

pub mod access;
pub mod body_wait;
pub mod clock;
pub mod config;
pub mod conn;
pub mod deferred;
pub mod heartbeat;
pub mod metrics;
pub mod pool;
pub mod slots;
pub mod watch;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::net::listener::Listener;
use crate::net::socket;
use crate::tls::{self, Tls};
use crate::wsgi::environ::{EnvironBuilder, EnvironConfig};
use crate::wsgi::file_wrapper::FileWrapper;
use crate::wsgi::log::Loggers;
use access::AccessLog;
use config::Config;
use pool::Shared;

/// A WSGI server over listening sockets handed in by Python.
#[pyclass(module = "ferrule._ferrule")]
pub struct Server {
    shared: Arc<Shared>,
    running: Mutex<bool>,
    /// `stop(graceful=False)`: do not wait for running requests.
    force: AtomicBool,
}

/// How often the graceful wait checks on the threads and runs signal handlers.
const STOP_POLL: Duration = Duration::from_millis(20);

/// Waits until one of `fds` is readable (at most `timeout`, forever if `None`);
/// returns which.
fn wait_any(fds: &[RawFd], timeout: Option<Duration>) -> Vec<bool> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: valid pollfd array.
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if r <= 0 {
        return vec![false; fds.len()];
    }
    pfds.iter().map(|p| p.revents != 0).collect()
}

#[pymethods]
impl Server {
    #[new]
    fn new(
        py: Python<'_>,
        app: Py<PyAny>,
        fds: Vec<RawFd>,
        config: &Bound<'_, PyDict>,
    ) -> PyResult<Server> {
        let cfg = Config::from_dict(config)?;
        if fds.is_empty() {
            return Err(PyRuntimeError::new_err("no listening sockets"));
        }
        let listeners = fds
            .iter()
            .map(|&fd| Listener::from_fd(fd))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| PyOSError::new_err(format!("listening socket: {e}")))?;
        let errors = match config.get_item("errors")? {
            Some(e) if !e.is_none() => e,
            _ => py.import("sys")?.getattr("stderr")?,
        };
        let file_wrapper = py.get_type::<FileWrapper>().into_any();
        let tls = match &cfg.tls {
            Some(files) => Some(Arc::new(
                Tls::new(files.clone()).map_err(|e| PyOSError::new_err(e.to_string()))?,
            )),
            None => None,
        };
        let url_scheme = if tls.is_some() { "https" } else { "http" };
        let environ = EnvironBuilder::new(
            py,
            &listeners,
            &EnvironConfig {
                root_path: &cfg.root_path,
                multithread: cfg.threads > 1,
                multiprocess: cfg.multiprocess,
                url_scheme,
                errors: &errors,
                file_wrapper: &file_wrapper,
            },
        )?;
        let loggers = Loggers::new(py)?;
        let format = access::format::Format::parse(&cfg.access_logformat)
            .map_err(|e| PyValueError::new_err(format!("setting access_logformat: {e}")))?;
        let file = cfg.access_logfile.as_deref();
        let access = AccessLog::new(format, file, cfg.access_log_python)
            .map_err(|e| PyOSError::new_err(format!("access log {}: {e}", file.unwrap_or("-"))))?;
        let shared = Shared::new(cfg, listeners, app, environ, loggers, access, tls)
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        Ok(Server {
            shared: Arc::new(shared),
            running: Mutex::new(false),
            force: AtomicBool::new(false),
        })
    }

    /// Serves until `stop()`; runs Python signal handlers when `wakeup_fd` is readable.
    #[pyo3(signature = (wakeup_fd=None))]
    fn run(&self, py: Python<'_>, wakeup_fd: Option<RawFd>) -> PyResult<()> {
        {
            let mut running = self
                .running
                .lock()
                .map_err(|_| PyRuntimeError::new_err("server state poisoned"))?;
            if *running {
                return Err(PyRuntimeError::new_err("server is already running"));
            }
            *running = true;
        }
        let shared = &self.shared;
        let n = shared.cfg.threads;
        if let Ok(mut alive) = shared.pool.alive.lock() {
            *alive = n;
        }
        let mut handles: Vec<JoinHandle<()>> = Vec::with_capacity(n + 1);
        for i in 0..n {
            let s = Arc::clone(shared);
            let h = std::thread::Builder::new()
                .name(format!("ferrule-app-{i}"))
                .spawn(move || s.run_thread(i))
                .map_err(|e| PyOSError::new_err(e.to_string()))?;
            handles.push(h);
        }
        let terminator = match shared.tls {
            Some(_) => {
                let s = Arc::clone(shared);
                Some(
                    std::thread::Builder::new()
                        .name("ferrule-tls".into())
                        .spawn(move || tls::terminator::run(s))
                        .map_err(|e| PyOSError::new_err(e.to_string()))?,
                )
            }
            None => None,
        };
        let s = Arc::clone(shared);
        let watcher = std::thread::Builder::new()
            .name("ferrule-watch".into())
            .spawn(move || watch::run(s))
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        let beat_done = Arc::new(AtomicBool::new(false));
        let beat = match shared.cfg.heartbeat {
            Some((fd, offset)) => {
                let s = Arc::clone(shared);
                let done = Arc::clone(&beat_done);
                Some(
                    std::thread::Builder::new()
                        .name("ferrule-heartbeat".into())
                        .spawn(move || heartbeat::run(s, fd, offset, done))
                        .map_err(|e| PyOSError::new_err(e.to_string()))?,
                )
            }
            None => None,
        };

        let mut fds = vec![shared.stopped.fd()];
        fds.extend(wakeup_fd);
        let mut failure: Option<PyErr> = None;
        // Runs Python's signal handlers (which may call stop()) when one is pending.
        let signals = |py: Python<'_>, ready: &[bool], failure: &mut Option<PyErr>| {
            if ready.get(1).copied().unwrap_or(false) {
                if let Some(fd) = wakeup_fd {
                    socket::drain(fd);
                }
                if let Err(e) = py.check_signals() {
                    failure.get_or_insert(e);
                    self.shared.stop();
                }
            }
        };
        loop {
            let ready = py.detach(|| wait_any(&fds, None));
            signals(py, &ready, &mut failure);
            if ready.first().copied().unwrap_or(false) || shared.is_stopping() {
                break;
            }
        }

        let max = shared.cfg.max_requests;
        if max > 0 && shared.served.load(Ordering::Relaxed) >= max {
            shared.loggers.log(
                py,
                "info",
                &format!("Served max_requests ({max}); stopping gracefully"),
            );
        }
        // Graceful: wait for running exchanges, up to graceful_timeout, still running
        // signal handlers, so that a second signal can ask for a fast stop.
        let deadline = Instant::now() + shared.cfg.graceful_timeout;
        let all_done = loop {
            if shared.pool.alive.lock().map_or(true, |n| *n == 0) {
                break true;
            }
            if self.force.load(Ordering::Acquire) {
                break false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                shared.loggers.log(
                    py,
                    "warning",
                    "graceful_timeout expired with requests still running; exiting anyway",
                );
                break false;
            }
            shared.stopped.drain();
            let ready = py.detach(|| wait_any(&fds, Some(left.min(STOP_POLL))));
            signals(py, &ready, &mut failure);
        };
        if all_done {
            py.detach(|| {
                for h in handles {
                    let _ = h.join();
                }
                let _ = watcher.join();
                if let Some(t) = terminator {
                    let _ = t.join();
                }
            });
        } else if self.force.load(Ordering::Acquire) {
            shared
                .loggers
                .log(py, "info", "Fast stop: not waiting for running requests");
        }
        beat_done.store(true, Ordering::Release);
        if let Some(b) = beat {
            b.thread().unpark();
            py.detach(|| {
                let _ = b.join();
            });
        }
        if let Some(access) = &shared.access {
            access.flush();
        }
        if let Ok(mut running) = self.running.lock() {
            *running = false;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Stops the server. Graceful: no new connections, idle ones close, running
    /// requests finish (up to `graceful_timeout`). Not graceful: `run()` returns at
    /// once, without waiting for running requests (a later call may upgrade a graceful
    /// stop to a fast one).
    #[pyo3(signature = (graceful=true))]
    fn stop(&self, graceful: bool) {
        if !graceful {
            self.force.store(true, Ordering::Release);
        }
        self.shared.stop();
    }

    /// Reads the TLS certificate and key again (SIGHUP); new connections use them. Raises
    /// OSError, keeping the old ones, if they cannot be read. Without TLS, does nothing.
    fn reload_tls(&self) -> PyResult<()> {
        match &self.shared.tls {
            Some(tls) => tls.reload().map_err(|e| PyOSError::new_err(e.to_string())),
            None => Ok(()),
        }
    }

    /// Opens the access-log file again (SIGUSR1, after logrotate moved it).
    fn reopen_logs(&self) -> PyResult<()> {
        match &self.shared.access {
            Some(access) => access
                .reopen()
                .map_err(|e| PyOSError::new_err(format!("access log: {e}"))),
            None => Ok(()),
        }
    }

    /// The request metrics (`metrics` in the config) as a dict, or None without them: see
    /// src/server/metrics.rs.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.shared
            .metrics
            .as_ref()
            .map(|m| m.snapshot(py))
            .transpose()
    }
}
