//! The server's settings as Rust reads them from the dict Python passes in.
//!
//! The settings themselves are declared once, in `python/ferrule/settings.py`; this
//! is only the typed view the core needs.

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::http::head::Limits;

#[derive(Clone, Debug)]
pub struct Config {
    pub threads: usize,
    pub keep_alive: Duration,
    pub header_timeout: Duration,
    pub graceful_timeout: Duration,
    /// Waiting for a body byte or for the client to take response bytes.
    pub io_timeout: Duration,
    pub limits: Limits,
    pub access_log: bool,
    pub root_path: String,
    pub multiprocess: bool,
    pub max_connections: usize,
    /// Stop gracefully after this many requests (0: never); the supervisor recycles.
    pub max_requests: u64,
    /// Where to write this process's heartbeat record: a shared file and an offset.
    pub heartbeat: Option<(i32, u64)>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            threads: 8,
            keep_alive: Duration::from_secs(5),
            header_timeout: Duration::from_secs(30),
            graceful_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(60),
            limits: Limits::default(),
            access_log: false,
            root_path: String::new(),
            multiprocess: false,
            max_connections: 1 << 20,
            max_requests: 0,
            heartbeat: None,
        }
    }
}

fn get<'py, T: for<'a> FromPyObject<'a, 'py, Error = PyErr>>(
    d: &Bound<'py, PyDict>,
    key: &str,
    default: T,
) -> PyResult<T> {
    match d.get_item(key)? {
        Some(v) if !v.is_none() => v
            .extract()
            .map_err(|e| PyValueError::new_err(format!("setting {key}: {e}"))),
        _ => Ok(default),
    }
}

fn seconds(d: &Bound<'_, PyDict>, key: &str, default: Duration) -> PyResult<Duration> {
    let v: f64 = get(d, key, default.as_secs_f64())?;
    if !v.is_finite() || v < 0.0 {
        return Err(PyValueError::new_err(format!(
            "setting {key}: must be >= 0 seconds"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

impl Config {
    pub fn from_dict(d: &Bound<'_, PyDict>) -> PyResult<Config> {
        let def = Config::default();
        let threads: usize = get(d, "threads", def.threads)?;
        if threads == 0 {
            return Err(PyValueError::new_err("setting threads: must be at least 1"));
        }
        let root_path: String = get(d, "root_path", String::new())?;
        Ok(Config {
            threads,
            keep_alive: seconds(d, "keep_alive", def.keep_alive)?,
            header_timeout: seconds(d, "header_timeout", def.header_timeout)?,
            graceful_timeout: seconds(d, "graceful_timeout", def.graceful_timeout)?,
            io_timeout: seconds(d, "io_timeout", def.io_timeout)?,
            limits: Limits {
                line: get(d, "limit_request_line", def.limits.line)?,
                fields: get(d, "limit_request_fields", def.limits.fields)?,
                field_size: get(d, "limit_request_field_size", def.limits.field_size)?,
                body: get(d, "limit_request_body", def.limits.body)?,
            },
            access_log: get(d, "access_log", false)?,
            root_path: root_path.trim_end_matches('/').to_string(),
            multiprocess: get(d, "multiprocess", false)?,
            max_connections: get(d, "max_connections", def.max_connections)?,
            max_requests: get(d, "max_requests", 0)?,
            heartbeat: match get::<Option<i32>>(d, "heartbeat_fd", None)? {
                Some(fd) if fd >= 0 => Some((fd, get(d, "heartbeat_offset", 0u64)?)),
                _ => None,
            },
        })
    }
}
