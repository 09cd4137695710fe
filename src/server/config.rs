//! The server's settings as Rust reads them from the dict Python passes in.
//!
//! The settings themselves are declared once, in `python/ferrule/settings.py`; this
//! is only the typed view the core needs.

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::http::head::Limits;
use crate::net::allow::AllowList;
use crate::static_files::Mounts;
use crate::tls::TlsFiles;

#[derive(Clone, Debug)]
pub struct Config {
    pub threads: usize,
    pub keep_alive: Duration,
    pub header_timeout: Duration,
    pub graceful_timeout: Duration,
    /// Waiting for a body byte or for the client to take response bytes.
    pub io_timeout: Duration,
    pub limits: Limits,
    /// The access log's file (`-`: stdout), written by Rust; `None`: no such file.
    pub access_logfile: Option<String>,
    /// gunicorn-style format of an access-log line.
    pub access_logformat: String,
    /// Also send access lines to the `ferrule.access` logger (it has a user handler).
    pub access_log_python: bool,
    pub root_path: String,
    /// Peers whose forwarding headers (and PROXY protocol headers) are believed.
    pub forwarded_allow: AllowList,
    /// Every connection starts with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// TLS certificate, key and client CA files; `None` without `certfile`.
    pub tls: Option<TlsFiles>,
    pub multiprocess: bool,
    pub max_connections: usize,
    /// Stop gracefully after this many requests (0: never); the supervisor recycles.
    pub max_requests: u64,
    /// Where to write this process's heartbeat record: a shared file and an offset.
    pub heartbeat: Option<(i32, u64)>,
    /// `--static /url=dir` mounts and their `Cache-Control` (src/static_files/).
    pub static_files: Mounts,
    /// Keep request metrics (`metrics_bind` is set; src/server/metrics.rs).
    pub metrics: bool,
    /// Keep them in the heartbeat file at this offset (a worker), not in private memory.
    pub metrics_offset: Option<u64>,
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
            access_logfile: None,
            access_logformat: crate::server::access::format::DEFAULT.to_string(),
            access_log_python: false,
            root_path: String::new(),
            forwarded_allow: AllowList::default(),
            proxy_protocol: false,
            tls: None,
            multiprocess: false,
            max_connections: 1 << 20,
            max_requests: 0,
            heartbeat: None,
            static_files: Mounts::default(),
            metrics: false,
            metrics_offset: None,
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
        let proxy_protocol: bool = get(d, "proxy_protocol", false)?;
        if proxy_protocol && get::<Option<String>>(d, "certfile", None)?.is_some() {
            return Err(PyValueError::new_err(
                "proxy_protocol cannot be combined with TLS (certfile)",
            ));
        }
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
            access_logfile: get(d, "access_logfile", None)?,
            access_logformat: get(d, "access_logformat", def.access_logformat)?,
            access_log_python: get(d, "access_log_python", false)?,
            root_path: root_path.trim_end_matches('/').to_string(),
            forwarded_allow: AllowList::parse(&get::<Vec<String>>(
                d,
                "forwarded_allow_ips",
                vec![],
            )?)
            .map_err(|e| PyValueError::new_err(format!("setting forwarded_allow_ips: {e}")))?,
            proxy_protocol,
            tls: match get::<Option<String>>(d, "certfile", None)? {
                None => None,
                Some(certfile) => Some(TlsFiles {
                    keyfile: get::<Option<String>>(d, "keyfile", None)?
                        .unwrap_or_else(|| certfile.clone()),
                    certfile,
                    ca_certs: get(d, "ca_certs", None)?,
                }),
            },
            multiprocess: get(d, "multiprocess", false)?,
            max_connections: get(d, "max_connections", def.max_connections)?,
            max_requests: get(d, "max_requests", 0)?,
            heartbeat: match get::<Option<i32>>(d, "heartbeat_fd", None)? {
                Some(fd) if fd >= 0 => Some((fd, get(d, "heartbeat_offset", 0u64)?)),
                _ => None,
            },
            static_files: Mounts::parse(
                &get::<Vec<String>>(d, "static", vec![])?,
                get(d, "static_cache_control", None)?,
            )
            .map_err(|e| PyValueError::new_err(format!("setting static: {e}")))?,
            metrics: get(d, "metrics", false)?,
            metrics_offset: get(d, "metrics_offset", None)?,
        })
    }
}
