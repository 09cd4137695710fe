//! ferrule: a WSGI (PEP 3333) HTTP/1.1 server with a Rust core.
//!
//! Layers, one folder each: [`net`] (sockets, epoll), [`http`] (RFC 9112 parsing and
//! framing), [`wsgi`] (the PEP 3333 bridge), [`server`] (threads and connections) and
//! [`supervise`] (what the Python master asks of Rust); [`tls`] terminates TLS beside them,
//! and [`static_files`] answers `--static` mounts before any Python runs.

pub mod http;
pub mod net;
pub mod server;
pub mod static_files;
pub mod supervise;
pub mod tls;
pub mod wsgi;

use pyo3::prelude::*;

#[pymodule]
fn _ferrule(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<server::Server>()?;
    m.add_class::<wsgi::start_response::StartResponse>()?;
    m.add_class::<wsgi::input::InputStream>()?;
    m.add_class::<wsgi::file_wrapper::FileWrapper>()?;
    m.add_class::<supervise::files::FileWatch>()?;
    m.add_function(wrap_pyfunction!(server::access::check_access_format, m)?)?;
    m.add_function(wrap_pyfunction!(server::metrics::read_metrics, m)?)?;
    m.add("METRICS_SIZE", server::metrics::SIZE)?;
    Ok(())
}
