//! Calling the app and sending what it returns (PEP 3333 §The Server/Gateway Side).
//!
//! The iterable's `close()` is always called: after success, after an app error and
//! after the client went away. An app error becomes a 500 when nothing was sent yet,
//! and a closed connection when something was; either way it is logged.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use super::bytes_tail::BytesTail;
use super::file_wrapper::FileWrapper;
use super::log::Loggers;
use super::output::{blocking_wait, Declared, Parked, SendError};
use super::start_response::StartResponse;
use crate::http::error::HttpError;
use crate::net::file_tail::Tail;

/// How the exchange ended, for the connection and the access log.
#[derive(Debug)]
pub struct Outcome {
    pub keep_alive: bool,
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: u64,
    /// The complete response the writer held instead of writing, or the end of one the
    /// socket did not take (empty if none): the caller writes it, now or with the loop's
    /// next flush, or when the socket has room.
    pub held: Vec<u8>,
    /// `held`'s share of the parked-bytes budget (none for a held small response).
    pub parked: Parked,
    /// The end of the app's last `bytes` object the socket did not take, sent after `held`.
    pub bytes_tail: Option<BytesTail>,
    /// The end of a `wsgi.file_wrapper` file the socket did not take, sent after `held`.
    pub file_tail: Option<Tail>,
}

const ERROR_BODY: &[u8] = b"Internal Server Error\n";

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_string())
}

/// Why sending the app's response stopped early.
enum Failure {
    /// The app (or its iterable) raised, or returned something that is not WSGI.
    App(PyErr),
    /// The client connection failed.
    Client(std::io::Error),
}

fn from_send(e: SendError) -> Failure {
    match e {
        SendError::Io(e) => Failure::Client(e),
        SendError::NotStarted => Failure::App(pyo3::exceptions::PyRuntimeError::new_err(
            "the app returned body data before calling start_response()",
        )),
    }
}

fn as_bytes<'a, 'py>(item: &'a Bound<'py, PyAny>) -> Result<&'a Bound<'py, PyBytes>, Failure> {
    item.cast::<PyBytes>().map_err(|_| {
        Failure::App(pyo3::exceptions::PyTypeError::new_err(format!(
            "the app's iterable yielded {}, not bytes",
            type_name(item)
        )))
    })
}

/// Sends a list or tuple of bytes in one go (the common case: one write).
fn send_sequence(
    py: Python<'_>,
    sr: &StartResponse,
    items: &[Bound<'_, PyAny>],
) -> Result<(), Failure> {
    let mut out = sr.output().map_err(Failure::App)?;
    let mut block = blocking_wait(py);
    if let [item] = items {
        let bytes = as_bytes(item)?;
        return out
            .send_owned(&[bytes.as_bytes()], Some(bytes), true, &mut block)
            .map_err(from_send);
    }
    let mut chunks: Vec<&[u8]> = Vec::with_capacity(items.len());
    let mut owner = None;
    for item in items {
        let bytes = as_bytes(item)?;
        chunks.push(bytes.as_bytes());
        owner = Some(bytes);
    }
    out.send_owned(&chunks, owner, true, &mut block)
        .map_err(from_send)
}

fn send_iterable(
    py: Python<'_>,
    sr: &StartResponse,
    iterable: &Bound<'_, PyAny>,
    progress: &mut dyn FnMut(),
) -> Result<(), Failure> {
    if let Ok(list) = iterable.cast::<PyList>() {
        if list.len() == 1 {
            // The usual `[body]`: no vectors to build.
            let item = list.get_item(0).map_err(Failure::App)?;
            return send_sequence(py, sr, std::slice::from_ref(&item));
        }
        let items: Vec<Bound<'_, PyAny>> = list.iter().collect();
        return send_sequence(py, sr, &items);
    }
    if let Ok(tuple) = iterable.cast::<PyTuple>() {
        let items: Vec<Bound<'_, PyAny>> = tuple.iter().collect();
        return send_sequence(py, sr, &items);
    }
    if let Ok(wrapper) = iterable.cast::<FileWrapper>() {
        let started = sr.output().map_err(Failure::App)?.declared.is_some();
        if started {
            if let Some(file) = wrapper.borrow().real_file(py) {
                let mut out = sr.output().map_err(Failure::App)?;
                let mut block = blocking_wait(py);
                let result = out.send_file(file.fd, file.offset, file.len, &mut block);
                drop(out);
                wrapper.borrow().advance(py, file.offset + file.len as i64);
                return result.map_err(from_send);
            }
        }
    }
    let iter = iterable.try_iter().map_err(|_| {
        Failure::App(pyo3::exceptions::PyTypeError::new_err(format!(
            "the app returned {}, which is not iterable",
            type_name(iterable)
        )))
    })?;
    for item in iter {
        let item = item.map_err(Failure::App)?;
        let bytes = as_bytes(&item)?;
        let mut out = sr.output().map_err(Failure::App)?;
        let mut block = blocking_wait(py);
        out.send_owned(&[bytes.as_bytes()], Some(bytes), false, &mut block)
            .map_err(from_send)?;
        progress();
    }
    let mut out = sr.output().map_err(Failure::App)?;
    let mut block = blocking_wait(py);
    out.finish(&mut block).map_err(from_send)
}

fn call_close(py: Python<'_>, iterable: &Bound<'_, PyAny>, loggers: &Loggers, request: &str) {
    if iterable.is_exact_instance_of::<PyList>() || iterable.is_exact_instance_of::<PyTuple>() {
        return;
    }
    if let Ok(close) = iterable.getattr(pyo3::intern!(py, "close")) {
        if let Err(e) = close.call0() {
            loggers.exception(
                py,
                &format!("Error closing the app's iterable for {request}"),
                &e,
            );
        }
    }
}

/// Replaces an unsent response with an error: the request body's refusal (400, 408,
/// 413) when the app stopped on a refused body, else a plain 500.
fn send_error(py: Python<'_>, sr: &StartResponse, refusal: Option<HttpError>) {
    let Ok(mut out) = sr.output() else { return };
    out.must_close = true;
    if out.headers_sent {
        return;
    }
    let (status, code, body) = match refusal {
        Some(e) => (
            format!("{} {}", e.status(), e.reason()).into_bytes(),
            e.status(),
            e.body().into_bytes(),
        ),
        None => (
            b"500 Internal Server Error".to_vec(),
            500,
            ERROR_BODY.to_vec(),
        ),
    };
    let mut d = Declared::new(&status, code, 48);
    d.push_header(b"Content-Type", b"text/plain; charset=utf-8");
    d.close = true;
    out.declared = Some(d);
    let mut block = blocking_wait(py);
    let _ = out.send(&[&body], true, &mut block);
}

/// Calls `app(environ, start_response)` and sends the response. `progress` is called
/// after each block of a body the app produces piece by piece.
pub fn run(
    py: Python<'_>,
    app: &Bound<'_, PyAny>,
    environ: Bound<'_, PyDict>,
    sr: &Bound<'_, StartResponse>,
    loggers: &Loggers,
    request: &str,
    progress: &mut dyn FnMut(),
) -> Outcome {
    let srr = sr.get();
    let result = app.call1((environ, sr));
    let failure = match &result {
        Err(e) => Some(Failure::App(e.clone_ref(py))),
        Ok(iterable) => {
            let sent = send_iterable(py, srr, iterable, progress);
            call_close(py, iterable, loggers, request);
            sent.err()
        }
    };
    match failure {
        None => {}
        Some(Failure::App(e)) => {
            let refusal = srr.output().ok().and_then(|o| o.body_refused());
            match refusal {
                // The client's fault, not the app's: no traceback (the exchange logs
                // why the body was refused).
                Some(r) => loggers.log(
                    py,
                    "debug",
                    &format!("{request}: the app stopped on a refused body ({r}): {e}"),
                ),
                None => loggers.exception(py, &format!("Error handling request {request}"), &e),
            }
            send_error(py, srr, refusal);
        }
        Some(Failure::Client(e)) => {
            loggers.log(
                py,
                "debug",
                &format!("Client went away during {request}: {e}"),
            );
            if let Ok(mut out) = srr.output() {
                out.must_close = true;
            }
        }
    }
    let Ok(mut out) = srr.output() else {
        return Outcome {
            keep_alive: false,
            status: 500,
            bytes: 0,
            held: Vec::new(),
            parked: Parked::default(),
            bytes_tail: None,
            file_tail: None,
        };
    };
    if out.truncated {
        loggers.log(
            py,
            "warning",
            &format!(
                "{request}: the app sent more than its Content-Length; the body was truncated"
            ),
        );
    }
    if out.short {
        loggers.log(
            py,
            "warning",
            &format!(
                "{request}: the app sent less than its Content-Length; closing the connection"
            ),
        );
    }
    let (held, parked) = out.take_held();
    let outcome = Outcome {
        keep_alive: out.keep_alive() && out.finished,
        status: out.code(),
        bytes: out.body_bytes(),
        held,
        parked,
        bytes_tail: out.take_bytes_tail(),
        file_tail: out.take_file_tail(),
    };
    out.detach();
    outcome
}
