//! The access log: one line per exchange (and per refused request), in gunicorn's format.
//!
//! Lines are formatted in Rust ([`format`]). They go to a file or stdout written by Rust
//! ([`sink`], no Python call), and to the `ferrule.access` Python logger only when the user
//! configured a handler on it (`--log-config`, or the app's own logging setup).

pub mod format;
pub mod sink;

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;

use crate::wsgi::log::Loggers;
use format::{Format, Record};
use sink::FileSink;

pub struct AccessLog {
    pub format: Format,
    file: Option<FileSink>,
    python: bool,
    /// The formatted time of the last line, by second.
    clock: Mutex<(u64, String)>,
}

impl AccessLog {
    /// `None` when no line would go anywhere (no file, no Python handler).
    pub fn new(format: Format, file: Option<&str>, python: bool) -> std::io::Result<Option<Self>> {
        let file = file.map(FileSink::open).transpose()?;
        if file.is_none() && !python {
            return Ok(None);
        }
        Ok(Some(AccessLog {
            format,
            file,
            python,
            clock: Mutex::new((0, String::new())),
        }))
    }

    /// The current time as the `t` atom shows it, computed once a second.
    pub fn now(&self) -> String {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let Ok(mut clock) = self.clock.lock() else {
            return clf_time(secs);
        };
        if clock.0 != secs || clock.1.is_empty() {
            *clock = (secs, clf_time(secs));
        }
        clock.1.clone()
    }

    pub fn write(&self, py: Python<'_>, loggers: &Loggers, rec: &Record<'_, '_>) {
        let mut line = Vec::with_capacity(256);
        self.format.render(&mut line, rec);
        if let Some(file) = &self.file {
            file.push(&line);
        }
        if self.python {
            loggers.access(py, &String::from_utf8_lossy(&line));
        }
    }

    pub fn flush(&self) {
        if let Some(file) = &self.file {
            file.flush();
        }
    }

    pub fn reopen(&self) -> std::io::Result<()> {
        match &self.file {
            Some(file) => file.reopen(),
            None => Ok(()),
        }
    }
}

/// Raises `ValueError` if `spec` is not a valid access-log format (the setting's validator).
#[pyfunction]
pub fn check_access_format(spec: &str) -> PyResult<()> {
    Format::parse(spec)
        .map(|_| ())
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}

/// `10/Oct/2000:13:55:36 -0700`, the Common Log Format time, in the server's local time
/// zone (`TZ`) with its offset from UTC, as gunicorn writes it.
fn clf_time(secs: u64) -> String {
    let t = libc::time_t::try_from(secs).unwrap_or(0);
    // SAFETY: an all-zero `tm` is a valid value; localtime_r writes one `tm` on our stack
    // and returns NULL (then the time is shown in UTC) only for an unrepresentable time.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return clf(secs, 0);
    }
    clf(secs.saturating_add_signed(tm.tm_gmtoff), tm.tm_gmtoff)
}

/// The CLF time for `local` (seconds since the epoch, shifted by the offset) and the
/// offset east of UTC in seconds.
fn clf(local: u64, offset: i64) -> String {
    let d = crate::http::date::format(local);
    // d = "Tue, 10 Oct 2000 13:55:36 GMT"
    let s = String::from_utf8_lossy(&d);
    let (sign, off) = if offset < 0 {
        ('-', -offset)
    } else {
        ('+', offset)
    };
    format!(
        "{}/{}/{}:{} {sign}{:02}{:02}",
        &s[5..7],
        &s[8..11],
        &s[12..16],
        &s[17..25],
        off / 3600,
        off % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn clf_time_format() {
        assert_eq!(super::clf(784_111_777, 0), "06/Nov/1994:08:49:37 +0000");
        // 1994-11-06 08:49:37 UTC seen from UTC-7 and from UTC+5:30.
        assert_eq!(
            super::clf(784_111_777 - 7 * 3600, -7 * 3600),
            "06/Nov/1994:01:49:37 -0700"
        );
        assert_eq!(
            super::clf(784_111_777 + 5 * 3600 + 1800, 5 * 3600 + 1800),
            "06/Nov/1994:14:19:37 +0530"
        );
    }
}
