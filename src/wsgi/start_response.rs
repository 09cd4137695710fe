//! `start_response` (PEP 3333 §The start_response() Callable) as a Rust class that
//! owns the exchange's response [`Output`], and the `write()` callable it returns.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use super::output::{blocking_wait, Declared, Output, SendError};
use super::vectorcall;
use crate::http::response::{check_header, is_hop_by_hop, parse_status};

/// The latin-1 bytes of `s`, read in place: CPython stores a str whose characters are all
/// below U+0100 one byte per character (PEP 393), and only such a str is latin-1.
#[cfg(not(any(Py_LIMITED_API, PyPy, GraalPy, Py_3_14)))]
fn latin1_in_place<'a>(s: &'a Bound<'_, PyString>) -> Option<&'a [u8]> {
    // SAFETY: `s` is a live str; PEP 393 strings are always ready from 3.12 on, and our
    // own are created ready. The data outlives the borrow of `s`, and a str is immutable.
    unsafe {
        let p = s.as_ptr();
        if ffi::PyUnicode_IS_READY(p) == 0 || ffi::PyUnicode_KIND(p) != ffi::PyUnicode_1BYTE_KIND {
            return None;
        }
        let len = usize::try_from(ffi::PyUnicode_GET_LENGTH(p)).ok()?;
        Some(std::slice::from_raw_parts(
            ffi::PyUnicode_1BYTE_DATA(p),
            len,
        ))
    }
}

#[cfg(any(Py_LIMITED_API, PyPy, GraalPy, Py_3_14))]
fn latin1_in_place<'a>(_s: &'a Bound<'_, PyString>) -> Option<&'a [u8]> {
    None
}

/// Encodes a Python str as latin-1 (ISO-8859-1), as PEP 3333 requires for headers.
/// The bytes are borrowed from the string where its storage allows it, not copied.
pub fn latin1<'a>(s: &'a Bound<'_, PyAny>, what: &str) -> PyResult<Cow<'a, [u8]>> {
    let s = s
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err(format!("{what} must be a str, not {}", type_name(s))))?;
    if let Some(bytes) = latin1_in_place(s) {
        return Ok(Cow::Borrowed(bytes));
    }
    match s.to_cow()? {
        Cow::Borrowed(text) if text.is_ascii() => Ok(Cow::Borrowed(text.as_bytes())),
        text => {
            let mut out = Vec::with_capacity(text.len());
            for ch in text.chars() {
                let c = ch as u32;
                if c > 0xFF {
                    return Err(PyValueError::new_err(format!(
                        "{what} is not latin-1: {text:?}"
                    )));
                }
                out.push(c as u8);
            }
            Ok(Cow::Owned(out))
        }
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_string())
}

/// Validates and encodes `status` and `headers` from the app.
/// The head is written into `spare`'s allocation.
fn declare(
    status: &Bound<'_, PyAny>,
    headers: &Bound<'_, PyAny>,
    spare: Vec<u8>,
) -> PyResult<Declared> {
    let status_bytes = latin1(status, "status")?;
    let code = parse_status(&status_bytes)
        .map_err(|e| PyValueError::new_err(format!("invalid status {status_bytes:?}: {e}")))?;
    let list = headers.cast::<PyList>().map_err(|_| {
        PyTypeError::new_err(format!(
            "headers must be a list, not {}",
            type_name(headers)
        ))
    })?;
    let mut d = Declared::in_buffer(spare, &status_bytes, code, list.len() * 32);
    for item in list.iter() {
        let pair = item.cast::<PyTuple>().map_err(|_| {
            PyTypeError::new_err(format!(
                "each header must be a (name, value) tuple, not {}",
                type_name(&item)
            ))
        })?;
        if pair.len() != 2 {
            return Err(PyTypeError::new_err(
                "each header must be a (name, value) tuple",
            ));
        }
        let (name_obj, value_obj) = (pair.get_item(0)?, pair.get_item(1)?);
        let name = latin1(&name_obj, "header name")?;
        let value = latin1(&value_obj, "header value")?;
        check_header(&name, &value).map_err(|e| {
            PyValueError::new_err(format!(
                "{e}: {:?}: {:?}",
                String::from_utf8_lossy(&name),
                String::from_utf8_lossy(&value)
            ))
        })?;
        if is_hop_by_hop(&name) {
            // PEP 3333 leaves hop-by-hop headers to the server; honour `close` only.
            if name.eq_ignore_ascii_case(b"connection")
                && crate::http::head::list_elements(&value)
                    .any(|v| v.eq_ignore_ascii_case(b"close"))
            {
                d.close = true;
            }
            continue;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let v = value.trim_ascii();
            if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
                return Err(PyValueError::new_err(format!(
                    "invalid Content-Length {:?}",
                    String::from_utf8_lossy(&value)
                )));
            }
            let n = v.iter().fold(0u64, |a, b| a * 10 + u64::from(b - b'0'));
            if d.content_length.is_some_and(|prev| prev != n) {
                return Err(PyValueError::new_err("conflicting Content-Length headers"));
            }
            if d.content_length.is_some() {
                continue;
            }
            d.content_length = Some(n);
        }
        d.push_header(&name, &value);
    }
    Ok(d)
}

/// The `start_response` callable handed to the app; it also owns the response state.
#[pyclass(module = "ferrule._ferrule", freelist = 64, frozen)]
pub struct StartResponse {
    /// How CPython calls it (src/wsgi/vectorcall.rs): [`call_vector`], always.
    vectorcall: ffi::vectorcallfunc,
    output: Mutex<Output>,
    /// Called after each block `write()` sent: the server counts it as progress.
    on_write: OnWrite,
}

/// What a `start_response` calls after a block its `write()` took went out (the server
/// counts it as progress of the exchange).
pub type OnWrite = Arc<dyn Fn() + Send + Sync>;

impl StartResponse {
    /// A new `start_response` that owns `output`; `on_write` is called after each block
    /// `write()` sent.
    pub fn create(
        py: Python<'_>,
        output: Output,
        on_write: OnWrite,
    ) -> PyResult<Py<StartResponse>> {
        let sr = Py::new(
            py,
            StartResponse {
                vectorcall: call_vector,
                output: Mutex::new(output),
                on_write,
            },
        )?;
        // SAFETY: every instance is made here, with `call_vector` in the same field; the
        // class is not subclassable.
        unsafe { vectorcall::install(sr.bind(py).as_any(), &sr.get().vectorcall) };
        Ok(sr)
    }

    /// Starts a new exchange on this object, which the last one left unreferenced (the
    /// caller checked): the app gets it as a new `start_response`, and its head buffer
    /// is reused.
    pub fn reuse(&self, mut out: Output) -> PyResult<()> {
        let mut cur = self.output()?;
        out.recycle(&mut cur);
        *cur = out;
        Ok(())
    }

    /// Locks the output; a second thread using the same exchange gets an error.
    pub fn output(&self) -> PyResult<MutexGuard<'_, Output>> {
        self.output
            .try_lock()
            .map_err(|_| PyRuntimeError::new_err("this response is in use by another thread"))
    }
}

impl StartResponse {
    /// A call with `given` positional arguments (the first three in `args`): `(status,
    /// headers[, exc_info])` declares the response and returns this object as `write`;
    /// `(data)` writes.
    fn call<'py>(
        slf: &Bound<'py, Self>,
        given: usize,
        args: [Option<Borrowed<'_, 'py, PyAny>>; 3],
        exc_info: Option<Borrowed<'_, 'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let [first, second, third] = args;
        let (status, headers, exc_info) = match (given, first, second, third, exc_info) {
            (1, Some(data), _, _, None) => {
                if data.is_instance_of::<PyString>() {
                    return Err(PyTypeError::new_err(
                        "write() takes bytes, not str (start_response() takes a status \
                         and a list of headers)",
                    ));
                }
                slf.get().write(py, &data)?;
                return Ok(py.None().into_bound(py));
            }
            (2, Some(status), Some(headers), _, info) => (status, headers, info),
            (3, Some(status), Some(headers), Some(info), None) => (status, headers, Some(info)),
            (n, _, _, _, info) => {
                return Err(PyTypeError::new_err(format!(
                    "start_response() takes a status, headers and an optional exc_info \
                     ({} given); its write() callable takes bytes",
                    n + usize::from(info.is_some())
                )))
            }
        };
        let this = slf.get();
        let mut out = this.output()?;
        match exc_info.filter(|e| !e.is_none()) {
            Some(info) => {
                if out.headers_sent {
                    // PEP 3333: too late to change the response; re-raise the app's error.
                    let value = info.get_item(1)?;
                    let tb = info.get_item(2)?;
                    let err = PyErr::from_value(value);
                    if !tb.is_none() {
                        err.set_traceback(py, Some(tb.cast_into()?));
                    }
                    return Err(err);
                }
            }
            None => {
                if out.declared.is_some() {
                    return Err(PyRuntimeError::new_err(
                        "start_response() called a second time without exc_info",
                    ));
                }
            }
        }
        let spare = std::mem::take(&mut out.spare_head);
        out.declared = Some(declare(&status, &headers, spare)?);
        Ok(slf.clone().into_any())
    }
}

/// `StartResponse`'s vectorcall function (src/wsgi/vectorcall.rs).
unsafe extern "C" fn call_vector(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this with the interpreter attached, `callable` an instance of
    // `StartResponse` (the only type that stores this function) and the call's arguments.
    unsafe {
        vectorcall::entry(|py| {
            let slf = Borrowed::from_ptr(py, callable).cast_unchecked::<StartResponse>();
            let args = vectorcall::args(py, args, nargsf, kwnames, "exc_info")?;
            StartResponse::call(&slf, args.given(), args.first(), args.keyword)
        })
    }
}

/// Maps a send failure to the Python exception the app sees.
pub fn send_error(e: SendError) -> PyErr {
    match e {
        SendError::NotStarted => {
            PyRuntimeError::new_err("body data before start_response() was called")
        }
        SendError::Io(e) => pyo3::exceptions::PyOSError::new_err(format!("client connection: {e}")),
    }
}

#[pymethods]
impl StartResponse {
    /// `start_response(status, headers, exc_info=None)` returns this same object as the
    /// `write(data)` callable: called with one argument, it writes. (PEP 3333 asks only for
    /// a callable taking one positional argument; a bound method made per request cost
    /// more than the rest of the call.)
    #[pyo3(signature = (*args, exc_info=None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        args: &Bound<'py, PyTuple>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let first: [_; 3] = std::array::from_fn(|i| args.get_borrowed_item(i).ok());
        Self::call(slf, args.len(), first, exc_info.map(Bound::as_borrowed))
    }

    /// The `write()` callable of PEP 3333 (for legacy apps): sends `data` at once.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = data.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!("write() takes bytes, not {}", type_name(data)))
        })?;
        let mut out = self.output()?;
        let mut block = blocking_wait(py);
        out.send(&[bytes.as_bytes()], false, &mut block)
            .map_err(send_error)?;
        (self.on_write)();
        Ok(())
    }
}
