//! Logging through Python's `logging`: the `ferrule.error` and `ferrule.access` loggers.

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The server's loggers, fetched once.
pub struct Loggers {
    pub error: Py<PyAny>,
    pub access: Py<PyAny>,
}

impl Loggers {
    pub fn new(py: Python<'_>) -> PyResult<Loggers> {
        let logging = py.import("logging")?;
        Ok(Loggers {
            error: logging
                .call_method1("getLogger", ("ferrule.error",))?
                .unbind(),
            access: logging
                .call_method1("getLogger", ("ferrule.access",))?
                .unbind(),
        })
    }

    /// Logs `msg` at ERROR with `err`'s traceback.
    pub fn exception(&self, py: Python<'_>, msg: &str, err: &PyErr) {
        let kwargs = PyDict::new(py);
        // into_value attaches the traceback to the exception (needed before Python 3.12).
        let _ = kwargs.set_item("exc_info", err.clone_ref(py).into_value(py));
        if self
            .error
            .bind(py)
            .call_method("error", (msg,), Some(&kwargs))
            .is_err()
        {
            // Logging itself failed (a broken handler); fall back to stderr.
            err.print(py);
        }
    }

    /// Logs at the given level name ("error", "warning", "info", "debug").
    pub fn log(&self, py: Python<'_>, level: &str, msg: &str) {
        if self.error.bind(py).call_method1(level, (msg,)).is_err() {
            eprintln!("ferrule: {msg}");
        }
    }

    pub fn access(&self, py: Python<'_>, line: &str) {
        let _ = self.access.bind(py).call_method1("info", (line,));
    }
}
