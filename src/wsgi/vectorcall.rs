//! The vectorcall protocol (PEP 590) for a `#[pyclass]` whose instances are called once
//! or more per request (`start_response`).
//!
//! pyo3 gives a class's `__call__` only the `tp_call` slot. A call through it packs the
//! arguments into a tuple, goes through pyo3's trampoline (the attach count in a
//! thread-local) and unpacks `*args` into a second tuple. Calling through vectorcall
//! instead saved ~280 of ~11,000 instructions a hello request (callgrind). An instance that stores a
//! [`ffi::vectorcallfunc`] can be called through it instead: its type records where the
//! pointer sits in each instance (`tp_vectorcall_offset`) and carries
//! `Py_TPFLAGS_HAVE_VECTORCALL`, and CPython then hands the function the caller's own
//! argument array. `tp_call` (pyo3's `__call__`) stays: `callable()`, `PyObject_Call`
//! from C without vectorcall, and the signature the stub describes all use it.
//!
//! The type is patched once, after pyo3 made it and before any instance is called. It
//! is immutable (pyo3 makes it so), so Python code cannot add a `__call__` that the
//! vectorcall function would bypass. On builds without the full C API (the limited API,
//! PyPy, GraalPy) nothing is patched and calls take `tp_call`.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;

/// Lets CPython call `obj`'s type through the function pointer every instance stores at
/// `field` (which must point into `obj`). Idempotent; the first call for a type patches it.
///
/// # Safety
/// Every instance of `obj`'s type must hold, at the same offset, a valid
/// [`ffi::vectorcallfunc`] for the whole of its life, and the type must not be
/// subclassable (a subclass could place its own data there).
#[cfg(not(any(Py_LIMITED_API, PyPy, GraalPy)))]
pub unsafe fn install(obj: &Bound<'_, PyAny>, field: *const ffi::vectorcallfunc) {
    // SAFETY: `obj` is live; its type object outlives it. The GIL is held, so no other
    // thread reads the type's flags while they change.
    unsafe {
        let tp = ffi::Py_TYPE(obj.as_ptr());
        if (*tp).tp_flags & ffi::Py_TPFLAGS_HAVE_VECTORCALL != 0 {
            return;
        }
        let offset = (field as usize).wrapping_sub(obj.as_ptr() as usize);
        (*tp).tp_vectorcall_offset = offset as ffi::Py_ssize_t;
        (*tp).tp_flags |= ffi::Py_TPFLAGS_HAVE_VECTORCALL;
        ffi::PyType_Modified(tp);
    }
}

#[cfg(any(Py_LIMITED_API, PyPy, GraalPy))]
pub unsafe fn install(_obj: &Bound<'_, PyAny>, _field: *const ffi::vectorcallfunc) {}

/// A vectorcall's arguments: the positional ones and one optional keyword.
pub struct Args<'a, 'py> {
    py: Python<'py>,
    positional: &'a [*mut ffi::PyObject],
    pub keyword: Option<Borrowed<'a, 'py, PyAny>>,
}

impl<'a, 'py> Args<'a, 'py> {
    /// How many positional arguments were given.
    pub fn given(&self) -> usize {
        self.positional.len()
    }

    /// The first `N` positional arguments (`None` past the last given).
    pub fn first<const N: usize>(&self) -> [Option<Borrowed<'a, 'py, PyAny>>; N] {
        // SAFETY: the pointers are the call's borrowed arguments (see `args`).
        std::array::from_fn(|i| {
            (self.positional.get(i)).map(|&p| unsafe { Borrowed::from_ptr(self.py, p) })
        })
    }
}

/// Reads a vectorcall's arguments, allowing `keyword` as the only keyword argument.
///
/// # Safety
/// `args`, `nargsf` and `kwnames` must be what CPython passed to a vectorcall function;
/// the result must not outlive the call.
pub unsafe fn args<'a, 'py>(
    py: Python<'py>,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
    keyword: &str,
) -> PyResult<Args<'a, 'py>> {
    // SAFETY: CPython passes `nargs` positional arguments followed by one value per
    // name in `kwnames` (a tuple of str), all borrowed for the duration of the call.
    unsafe {
        let n = usize::try_from(ffi::PyVectorcall_NARGS(nargsf)).unwrap_or(0);
        let kw = if kwnames.is_null() {
            0
        } else {
            usize::try_from(ffi::PyTuple_GET_SIZE(kwnames)).unwrap_or(0)
        };
        let all: &[*mut ffi::PyObject] = if n + kw == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(args, n + kw)
        };
        let mut out = Args {
            py,
            positional: &all[..n],
            keyword: None,
        };
        for (i, &value) in all[n..].iter().enumerate() {
            let name = Borrowed::from_ptr(py, ffi::PyTuple_GET_ITEM(kwnames, i as ffi::Py_ssize_t));
            let name = name.cast::<pyo3::types::PyString>()?;
            let name = name.to_cow()?;
            if name != keyword {
                return Err(PyTypeError::new_err(format!(
                    "unexpected keyword argument '{name}'"
                )));
            }
            out.keyword = Some(Borrowed::from_ptr(py, value));
        }
        Ok(out)
    }
}

/// Runs a vectorcall function's body: its result as a new reference, or NULL with the
/// error (or a panic, as pyo3's `PanicException`) raised.
///
/// # Safety
/// The calling thread must be attached to the interpreter (CPython calls vectorcall
/// functions only from such threads).
pub unsafe fn entry<F>(body: F) -> *mut ffi::PyObject
where
    F: for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyAny>> + std::panic::UnwindSafe,
{
    // SAFETY: see the function's contract.
    let py = unsafe { Python::assume_attached() };
    let err = match std::panic::catch_unwind(move || body(py)) {
        Ok(Ok(value)) => return value.into_ptr(),
        Ok(Err(e)) => e,
        Err(_) => pyo3::panic::PanicException::new_err("a Rust panic in a call from Python"),
    };
    err.restore(py);
    std::ptr::null_mut()
}
