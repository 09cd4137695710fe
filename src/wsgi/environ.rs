//! Building the WSGI `environ` dict (PEP 3333 §environ Variables) from a parsed head.
//!
//! The constant keys live in a prebuilt template dict per listening socket, copied
//! per request; keys are interned Python strings, and header names are converted to
//! `HTTP_*` keys once and cached.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use pyo3::{ffi, intern};

use super::input::InputStream;
use crate::http::head::Head;
use crate::http::percent;
use crate::net::listener::Listener;

/// Settings that shape every environ.
pub struct EnvironConfig<'a> {
    pub root_path: &'a str,
    pub multithread: bool,
    pub multiprocess: bool,
    pub url_scheme: &'a str,
    pub errors: &'a Bound<'a, PyAny>,
    pub file_wrapper: &'a Bound<'a, PyAny>,
}

/// Per-listener templates of the constant environ keys.
pub struct EnvironBuilder {
    templates: Vec<Py<PyDict>>,
    root_path: Vec<u8>,
}

/// Decodes bytes as latin-1 into a Python str (PEP 3333's "bytes as str").
pub fn latin1_str<'py>(py: Python<'py>, b: &[u8]) -> Bound<'py, PyString> {
    // SAFETY: PyUnicode_DecodeLatin1 cannot fail for any input except memory errors,
    // in which case we fall back to a lossless-for-ASCII conversion.
    unsafe {
        let ptr = ffi::PyUnicode_DecodeLatin1(
            b.as_ptr().cast(),
            b.len() as ffi::Py_ssize_t,
            std::ptr::null(),
        );
        if ptr.is_null() {
            let _ = PyErr::take(py);
            return PyString::new(py, &String::from_utf8_lossy(b));
        }
        Bound::from_owned_ptr(py, ptr).cast_into_unchecked()
    }
}

/// FNV-1a: the header-key cache hashes a few short names per request, where SipHash's
/// flood resistance buys nothing (the cache stops growing at [`HEADER_KEY_CACHE`] names).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type HeaderKeys = HashMap<Box<[u8]>, Py<PyString>, BuildHasherDefault<Fnv>>;

/// The Python strings made from the last `Host` value a thread saw: a server sees few
/// distinct hosts, and each keep-alive client repeats its own.
struct HostStrs {
    raw: Box<[u8]>,
    /// `HTTP_HOST`.
    value: Py<PyString>,
    /// `SERVER_NAME` (none for a value with an empty host part).
    name: Option<Py<PyString>>,
}

thread_local! {
    static HEADER_KEYS: RefCell<HeaderKeys> = RefCell::new(HeaderKeys::default());
    static LAST_HOST: RefCell<Option<HostStrs>> = const { RefCell::new(None) };
}

/// `HTTP_HOST` and `SERVER_NAME` for a `Host` value, made once per distinct value in a row.
fn host_strs<'py>(
    py: Python<'py>,
    host: &[u8],
) -> (Bound<'py, PyString>, Option<Bound<'py, PyString>>) {
    LAST_HOST.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(h) = c.as_ref().filter(|h| *h.raw == *host) {
            let name = h.name.as_ref().map(|n| n.clone_ref(py).into_bound(py));
            return (h.value.clone_ref(py).into_bound(py), name);
        }
        let value = latin1_str(py, host);
        let name = Some(host_name(host))
            .filter(|n| !n.is_empty())
            .map(|n| latin1_str(py, n));
        *c = Some(HostStrs {
            raw: host.into(),
            value: value.clone().unbind(),
            name: name.as_ref().map(|n| n.clone().unbind()),
        });
        (value, name)
    })
}

const HEADER_KEY_CACHE: usize = 512;

/// The environ key for a header name, or `None` if the header is dropped.
fn header_key<'py>(py: Python<'py>, name: &[u8]) -> Option<Bound<'py, PyString>> {
    if name.contains(&b'_') {
        // Dropped like nginx and gunicorn do: `X_Forwarded_For` must not be able to
        // pose as `X-Forwarded-For` once both become HTTP_X_FORWARDED_FOR.
        return None;
    }
    if let Some(k) = HEADER_KEYS.with(|c| c.borrow().get(name).map(|k| k.clone_ref(py))) {
        return Some(k.into_bound(py));
    }
    let key = if name.eq_ignore_ascii_case(b"content-type") {
        "CONTENT_TYPE".to_string()
    } else if name.eq_ignore_ascii_case(b"content-length") {
        "CONTENT_LENGTH".to_string()
    } else {
        let mut k = String::with_capacity(name.len() + 5);
        k.push_str("HTTP_");
        for &b in name {
            k.push(if b == b'-' {
                '_'
            } else {
                b.to_ascii_uppercase() as char
            });
        }
        k
    };
    let key = PyString::intern(py, &key);
    HEADER_KEYS.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() < HEADER_KEY_CACHE {
            c.insert(name.into(), key.clone().unbind());
        }
    });
    Some(key)
}

fn method_str<'py>(py: Python<'py>, m: &str) -> Bound<'py, PyString> {
    match m {
        "GET" => intern!(py, "GET").clone(),
        "POST" => intern!(py, "POST").clone(),
        "HEAD" => intern!(py, "HEAD").clone(),
        "PUT" => intern!(py, "PUT").clone(),
        "DELETE" => intern!(py, "DELETE").clone(),
        _ => PyString::new(py, m),
    }
}

/// Inserts `value` under `key` unless the key is there (one lookup, where `get_item` then
/// `set_item` takes two). Returns the value that was there already, if any. (Whether it
/// was is told by the dict's size: the returned object cannot tell, since equal short
/// strings are often one and the same object.)
fn set_default<'py>(
    env: &Bound<'py, PyDict>,
    key: &Bound<'py, PyString>,
    value: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let before = env.len();
    // SAFETY: all three are live objects; PyDict_SetDefault returns a borrowed reference
    // (or NULL with an exception set), which `from_borrowed_ptr_or_err` increfs.
    let held = unsafe {
        let held = ffi::PyDict_SetDefault(env.as_ptr(), key.as_ptr(), value.as_ptr());
        Bound::from_borrowed_ptr_or_err(env.py(), held)?
    };
    Ok((env.len() == before).then_some(held))
}

/// The host part of a Host header value (`name`, `name:port`, `[v6]:port`).
fn host_name(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match memchr::memchr(b']', host) {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match memchr::memrchr(b':', host) {
        Some(i) => &host[..i],
        None => host,
    }
}

/// Grows the template's hash table past the size its keys need, so that each request's
/// copy has room for its header keys and never resizes while it is built (a resize
/// rebuilds the whole table: ~700 instructions a request, with `Host` alone).
///
/// CPython copies a dict by cloning its table when at most a third of the table's entries
/// are deleted ones: the copy keeps the template's (larger) table. 21 keys fill a 32-slot
/// table; one more grows it to 64 slots (room for 42), and deleting that one leaves a
/// single deleted entry. Without this, a copy of the 21-key template is full, and the
/// first header grows it.
fn make_room(d: &Bound<'_, PyDict>) -> PyResult<()> {
    const GROWN: usize = 22;
    let py = d.py();
    let pads: Vec<Bound<'_, PyString>> = (d.len()..GROWN)
        .map(|i| PyString::new(py, &format!("ferrule.room.{i}")))
        .collect();
    for pad in &pads {
        d.set_item(pad, py.None())?;
    }
    for pad in &pads {
        d.del_item(pad)?;
    }
    Ok(())
}

impl EnvironBuilder {
    pub fn new(
        py: Python<'_>,
        listeners: &[Listener],
        cfg: &EnvironConfig<'_>,
    ) -> PyResult<EnvironBuilder> {
        let mut templates = Vec::with_capacity(listeners.len());
        for l in listeners {
            let d = PyDict::new(py);
            d.set_item(
                intern!(py, "SERVER_SOFTWARE"),
                concat!("ferrule/", env!("CARGO_PKG_VERSION")),
            )?;
            d.set_item(intern!(py, "SCRIPT_NAME"), cfg.root_path)?;
            d.set_item(intern!(py, "SERVER_NAME"), &l.server_name)?;
            d.set_item(intern!(py, "SERVER_PORT"), &l.server_port)?;
            d.set_item(intern!(py, "wsgi.version"), (1, 0))?;
            d.set_item(intern!(py, "wsgi.url_scheme"), cfg.url_scheme)?;
            d.set_item(intern!(py, "wsgi.errors"), cfg.errors)?;
            d.set_item(intern!(py, "wsgi.multithread"), cfg.multithread)?;
            d.set_item(intern!(py, "wsgi.multiprocess"), cfg.multiprocess)?;
            d.set_item(intern!(py, "wsgi.run_once"), false)?;
            d.set_item(intern!(py, "wsgi.input_terminated"), true)?;
            d.set_item(intern!(py, "wsgi.file_wrapper"), cfg.file_wrapper)?;
            // The values most requests have: `build` sets these keys only when the
            // request differs.
            d.set_item(intern!(py, "REQUEST_METHOD"), intern!(py, "GET"))?;
            d.set_item(intern!(py, "SERVER_PROTOCOL"), intern!(py, "HTTP/1.1"))?;
            d.set_item(intern!(py, "QUERY_STRING"), intern!(py, ""))?;
            // A request with a body gets its own stream; the others share this one,
            // which holds no state (every read returns b"").
            d.set_item(
                intern!(py, "wsgi.input"),
                Py::new(py, InputStream::empty())?,
            )?;
            // Keys every request sets, present from the start: the copy then has room
            // for them (and for the headers), so building an environ never resizes it.
            for key in [
                intern!(py, "REMOTE_ADDR"),
                intern!(py, "REMOTE_PORT"),
                intern!(py, "REQUEST_URI"),
                intern!(py, "RAW_URI"),
                intern!(py, "PATH_INFO"),
            ] {
                d.set_item(key, py.None())?;
            }
            make_room(&d)?;
            templates.push(d.unbind());
        }
        Ok(EnvironBuilder {
            templates,
            root_path: cfg.root_path.as_bytes().to_vec(),
        })
    }

    /// Builds the environ for one request (without `wsgi.input`).
    pub fn build<'py>(
        &self,
        py: Python<'py>,
        listener: usize,
        head: &Head<'_, '_>,
        remote_addr: &Bound<'py, PyString>,
        remote_port: &Bound<'py, PyString>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let template = self
            .templates
            .get(listener)
            .or_else(|| self.templates.first())
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("no listener"))?;
        let env = template.bind(py).copy()?;

        // The template holds GET, HTTP/1.1 and an empty query string.
        if head.method != "GET" {
            env.set_item(intern!(py, "REQUEST_METHOD"), method_str(py, head.method))?;
        }
        if !head.http11 {
            env.set_item(intern!(py, "SERVER_PROTOCOL"), intern!(py, "HTTP/1.0"))?;
        }
        env.set_item(intern!(py, "REMOTE_ADDR"), remote_addr)?;
        env.set_item(intern!(py, "REMOTE_PORT"), remote_port)?;

        let target = head.target.as_bytes();
        // Latin-1, like every CGI value (PEP 3333's native strings), not UTF-8.
        let raw = latin1_str(py, head.target.as_bytes());
        env.set_item(intern!(py, "REQUEST_URI"), &raw)?;
        env.set_item(intern!(py, "RAW_URI"), &raw)?;
        let target = match memchr::memchr(b'#', target) {
            Some(i) => &target[..i],
            None => target,
        };
        let (mut path, query) = match memchr::memchr(b'?', target) {
            Some(i) => (&target[..i], &target[i + 1..]),
            None => (target, &b""[..]),
        };
        // absolute-form (RFC 9112 §3.2.2): keep only the path.
        if path.len() > 7
            && (path[..7].eq_ignore_ascii_case(b"http://")
                || path
                    .get(..8)
                    .is_some_and(|p| p.eq_ignore_ascii_case(b"https://")))
        {
            let after = &path[path.iter().position(|&b| b == b':').unwrap_or(0) + 3..];
            path = match memchr::memchr(b'/', after) {
                Some(i) => &after[i..],
                None => b"/",
            };
        }
        // asterisk-form (`OPTIONS *`) and authority-form (`CONNECT host:port`) name no
        // path: PATH_INFO is empty (the target stays in REQUEST_URI / RAW_URI).
        if !path.starts_with(b"/") {
            path = b"";
        }
        let decoded = percent::decode(path);
        let mut path: &[u8] = decoded.as_deref().unwrap_or(path);
        if !self.root_path.is_empty()
            && path.starts_with(&self.root_path)
            && matches!(path.get(self.root_path.len()), None | Some(b'/'))
        {
            path = &path[self.root_path.len()..];
        }
        if decoded.is_none() && path == head.target.as_bytes() {
            // The whole target is the path (no query, nothing escaped): one string.
            env.set_item(intern!(py, "PATH_INFO"), &raw)?;
        } else {
            env.set_item(intern!(py, "PATH_INFO"), latin1_str(py, path))?;
        }
        if !query.is_empty() {
            env.set_item(intern!(py, "QUERY_STRING"), latin1_str(py, query))?;
        }
        let host = head.host.map(|host| (host, host_strs(py, host)));
        if let Some((_, (_, Some(name)))) = &host {
            env.set_item(intern!(py, "SERVER_NAME"), name)?;
        }

        if let Some(n) = head.content_length {
            // Canonical and single, however many identical fields carried it.
            let mut digits = itoa::Buffer::new();
            env.set_item(intern!(py, "CONTENT_LENGTH"), digits.format(n))?;
        }
        for h in head.headers {
            if h.name.eq_ignore_ascii_case("content-length") {
                continue;
            }
            let Some(key) = header_key(py, h.name.as_bytes()) else {
                continue;
            };
            let value = match &host {
                Some((raw, (value, _))) if *raw == h.value => value.clone(),
                _ => latin1_str(py, h.value),
            };
            if let Some(prev) = set_default(&env, &key, &value)? {
                // A repeated header: its values are joined (RFC 9110 §5.3).
                let joined = format!(
                    "{}, {}",
                    prev.cast::<PyString>()?.to_cow()?,
                    value.to_cow()?
                );
                env.set_item(&key, joined)?;
            }
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn host_names() {
        assert_eq!(host_name(b"example.com"), b"example.com");
        assert_eq!(host_name(b"example.com:8080"), b"example.com");
        assert_eq!(host_name(b"[::1]:8080"), b"[::1]");
        assert_eq!(host_name(b"[::1]"), b"[::1]");
    }
}
