//! The WSGI environ builder, `ferrule::wsgi::environ::EnvironBuilder::build`, on heads
//! that `head::parse` made of arbitrary bytes, inside a real (embedded) CPython.
//!
//! Input: a byte choosing the limits (as in the `head` target), a byte choosing the
//! builder's settings (root path, URL scheme, multithread, multiprocess), a byte choosing
//! the listener (TCP, unix, or an index past the end) and the peer, then the request.
//!
//! Checks (PEP 3333 §environ Variables and what the builder promises): building never
//! fails for a parsed head; every key is a str, every CGI value an exact str of code
//! points below 256 (a "native string"); the CGI keys are all there; `REQUEST_METHOD`,
//! `SERVER_PROTOCOL`, `REQUEST_URI`/`RAW_URI` and `QUERY_STRING` give back the request
//! line's bytes through latin-1; `PATH_INFO` is the target's path, percent-decoded, with
//! `SCRIPT_NAME` (the root path) taken off its front on a segment boundary, and is empty
//! or starts with '/'; `HTTP_*` keys are exactly the headers (upper case, '-' as '_',
//! names with '_' dropped, repeats joined with ", "), values latin-1 round trips of the
//! bytes; `CONTENT_TYPE`/`CONTENT_LENGTH` never appear as `HTTP_*`; `CONTENT_LENGTH` is
//! the parsed length; `SERVER_NAME` comes from Host; the `wsgi.*` keys are as set up.
#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::sync::OnceLock;

use ferrule::http::head;
use ferrule::net::listener::Listener;
use ferrule::wsgi::environ::{EnvironBuilder, EnvironConfig};
use ferrule::wsgi::file_wrapper::FileWrapper;
use ferrule_fuzz::{limits, Input};
use libfuzzer_sys::fuzz_target;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

/// Root paths as `--root-path` leaves them (empty, or '/' and no trailing '/').
const ROOTS: [&str; 4] = ["", "/app", "/a b", "/x.y/z"];

/// Two listening sockets that nothing ever connects to: the builder takes
/// `SERVER_NAME`/`SERVER_PORT` defaults from their addresses.
struct Sockets {
    listeners: Vec<Listener>,
    _tcp: TcpListener,
    _unix: UnixListener,
}

fn sockets() -> &'static Sockets {
    static S: OnceLock<Sockets> = OnceLock::new();
    S.get_or_init(|| {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let path = std::env::temp_dir().join(format!("ferrule-fuzz-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let unix = UnixListener::bind(&path).expect("bind a unix socket");
        let _ = std::fs::remove_file(&path);
        let listeners = vec![
            Listener::from_fd(tcp.as_raw_fd()).unwrap(),
            Listener::from_fd(unix.as_raw_fd()).unwrap(),
        ];
        Sockets {
            listeners,
            _tcp: tcp,
            _unix: unix,
        }
    })
}

thread_local! {
    static BUILDERS: RefCell<HashMap<u8, EnvironBuilder>> = RefCell::new(HashMap::new());
}

/// The settings byte's meaning.
struct Settings {
    key: u8,
    root: &'static str,
    scheme: &'static str,
    multithread: bool,
    multiprocess: bool,
}

fn settings(b: u8) -> Settings {
    Settings {
        key: b & 31,
        root: ROOTS[usize::from(b & 3)],
        scheme: if b & 4 == 0 { "http" } else { "https" },
        multithread: b & 8 != 0,
        multiprocess: b & 16 != 0,
    }
}

fn latin1(v: &Bound<'_, PyAny>) -> Vec<u8> {
    assert!(v.is_exact_instance_of::<PyString>(), "{v:?} is not a str");
    let s = v.cast::<PyString>().unwrap().to_cow().unwrap();
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or_else(|_| panic!("{s:?} is not latin-1")))
        .collect()
}

fn get<'py>(env: &Bound<'py, PyDict>, key: &str) -> Bound<'py, PyAny> {
    env.get_item(key)
        .unwrap()
        .unwrap_or_else(|| panic!("no {key}"))
}

fn split_at_byte(s: &[u8], b: u8) -> (&[u8], Option<&[u8]>) {
    match s.iter().position(|&x| x == b) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// `PATH_INFO` for `target` under `root`, from RFC 9112 §3.2's target forms.
fn expected_path(target: &[u8], root: &[u8]) -> Vec<u8> {
    let (t, _fragment) = split_at_byte(target, b'#');
    let (p, _query) = split_at_byte(t, b'?');
    let lower = p.to_ascii_lowercase();
    let scheme = if lower.starts_with(b"http://") {
        7
    } else if lower.starts_with(b"https://") {
        8
    } else {
        0
    };
    let path: &[u8] = if scheme > 0 && p.len() > 7 {
        // absolute-form: the path after the authority, "/" if there is none.
        match p[scheme..].iter().position(|&b| b == b'/') {
            Some(i) => &p[scheme + i..],
            None => b"/",
        }
    } else if p.starts_with(b"/") {
        p
    } else {
        // asterisk-form and authority-form: no path.
        b""
    };
    let decoded = percent_decode(path);
    if !root.is_empty()
        && decoded.starts_with(root)
        && matches!(decoded.get(root.len()), None | Some(b'/'))
    {
        decoded[root.len()..].to_vec()
    } else {
        decoded
    }
}

/// `SERVER_NAME` from a Host value: the name without the port (`[v6]` kept whole).
fn host_name(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.iter().rposition(|&b| b == b':') {
            Some(i) => &host[..i],
            None => host,
        }
    }
}

/// The `HTTP_*` and `CONTENT_TYPE` keys the headers make, in order, with their values.
fn expected_headers(h: &head::Head<'_, '_>) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for f in h.headers {
        if f.name.eq_ignore_ascii_case("content-length") || f.name.contains('_') {
            continue;
        }
        let key = if f.name.eq_ignore_ascii_case("content-type") {
            "CONTENT_TYPE".to_string()
        } else {
            format!("HTTP_{}", f.name.to_ascii_uppercase().replace('-', "_"))
        };
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => {
                v.extend_from_slice(b", ");
                v.extend_from_slice(f.value);
            }
            None => out.push((key, f.value.to_vec())),
        }
    }
    out
}

/// PEP 3333's CGI keys (without the optional CONTENT_*), and the extra ones ferrule sets.
const CGI_KEYS: [&str; 12] = [
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "SERVER_SOFTWARE",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "REQUEST_URI",
    "RAW_URI",
];

/// The `wsgi.*` keys; `wsgi.input` is set later, by the caller.
const WSGI_KEYS: [&str; 9] = [
    "wsgi.version",
    "wsgi.url_scheme",
    "wsgi.input",
    "wsgi.errors",
    "wsgi.multithread",
    "wsgi.multiprocess",
    "wsgi.run_once",
    "wsgi.input_terminated",
    "wsgi.file_wrapper",
];

fn check(py: Python<'_>, set: &Settings, listener: usize, peer: u8, h: &head::Head<'_, '_>) {
    let sockets = sockets();
    let (addr, port) = match peer & 3 {
        0 => ("127.0.0.1", "40000"),
        1 => ("::1", "1"),
        2 => ("", ""),
        _ => ("10.0.0.1", "65535"),
    };
    let remote_addr = PyString::new(py, addr);
    let remote_port = PyString::new(py, port);
    let errors = py.import("sys").unwrap().getattr("stderr").unwrap();
    let file_wrapper = py.get_type::<FileWrapper>().into_any();
    let env = BUILDERS.with(|b| {
        let mut b = b.borrow_mut();
        let builder = b.entry(set.key).or_insert_with(|| {
            EnvironBuilder::new(
                py,
                &sockets.listeners,
                &EnvironConfig {
                    root_path: set.root,
                    multithread: set.multithread,
                    multiprocess: set.multiprocess,
                    url_scheme: set.scheme,
                    errors: &errors,
                    file_wrapper: &file_wrapper,
                },
            )
            .unwrap()
        });
        builder
            .build(py, listener, h, &remote_addr, &remote_port)
            .unwrap_or_else(|e| panic!("build failed for {h:?}: {e}"))
    });
    let l = sockets
        .listeners
        .get(listener)
        .unwrap_or(&sockets.listeners[0]);

    let target = h.target.as_bytes();

    // Keys: str; CGI values native strings; nothing but the known keys and HTTP_*.
    for (k, v) in env.iter() {
        assert!(k.is_exact_instance_of::<PyString>(), "key {k:?}");
        let k = k.cast::<PyString>().unwrap().to_cow().unwrap().into_owned();
        if k.starts_with("wsgi.") {
            assert!(WSGI_KEYS.contains(&k.as_str()), "unknown key {k}");
            continue;
        }
        latin1(&v);
        if let Some(name) = k.strip_prefix("HTTP_") {
            assert!(!name.is_empty());
            assert!(
                name.bytes().all(|b| b != b'-' && !b.is_ascii_lowercase()),
                "key {k}"
            );
            assert!(
                k != "HTTP_CONTENT_TYPE" && k != "HTTP_CONTENT_LENGTH",
                "{k}"
            );
        } else {
            assert!(
                CGI_KEYS.contains(&k.as_str()) || k == "CONTENT_TYPE" || k == "CONTENT_LENGTH",
                "unknown key {k}"
            );
        }
    }
    for k in CGI_KEYS.iter().chain(&WSGI_KEYS) {
        get(&env, k);
    }

    // The request line.
    assert_eq!(latin1(&get(&env, "REQUEST_METHOD")), h.method.as_bytes());
    let proto: &[u8] = if h.http11 { b"HTTP/1.1" } else { b"HTTP/1.0" };
    assert_eq!(latin1(&get(&env, "SERVER_PROTOCOL")), proto);
    assert_eq!(latin1(&get(&env, "REQUEST_URI")), target, "REQUEST_URI");
    assert_eq!(latin1(&get(&env, "RAW_URI")), target, "RAW_URI");
    let (t, _) = split_at_byte(target, b'#');
    let query = split_at_byte(t, b'?').1.unwrap_or(b"");
    assert_eq!(latin1(&get(&env, "QUERY_STRING")), query, "QUERY_STRING");
    let script_name = latin1(&get(&env, "SCRIPT_NAME"));
    assert_eq!(script_name, set.root.as_bytes());
    let path_info = latin1(&get(&env, "PATH_INFO"));
    assert!(
        path_info.is_empty() || path_info.starts_with(b"/"),
        "PATH_INFO {path_info:?}"
    );
    assert_eq!(
        path_info,
        expected_path(target, set.root.as_bytes()),
        "PATH_INFO of {:?} under {:?}",
        h.target,
        set.root
    );

    // Server and peer.
    let server_name = latin1(&get(&env, "SERVER_NAME"));
    match h.host.map(host_name) {
        Some(name) if !name.is_empty() => assert_eq!(server_name, name),
        _ => assert_eq!(server_name, l.server_name.as_bytes()),
    }
    assert!(!server_name.is_empty());
    assert_eq!(latin1(&get(&env, "SERVER_PORT")), l.server_port.as_bytes());
    assert_eq!(latin1(&get(&env, "REMOTE_ADDR")), addr.as_bytes());
    assert_eq!(latin1(&get(&env, "REMOTE_PORT")), port.as_bytes());

    // Headers.
    let expected = expected_headers(h);
    let mut got: Vec<(String, Vec<u8>)> = env
        .iter()
        .filter_map(|(k, v)| {
            let k = k.cast::<PyString>().unwrap().to_cow().unwrap().into_owned();
            (k.starts_with("HTTP_") || k == "CONTENT_TYPE").then(|| (k, latin1(&v)))
        })
        .collect();
    let mut want = expected.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "header keys");
    match h.content_length {
        Some(n) => assert_eq!(
            latin1(&get(&env, "CONTENT_LENGTH")),
            n.to_string().as_bytes()
        ),
        None => assert!(env.get_item("CONTENT_LENGTH").unwrap().is_none()),
    }

    // wsgi.*
    assert_eq!(
        get(&env, "wsgi.version").extract::<(i32, i32)>().unwrap(),
        (1, 0)
    );
    assert_eq!(latin1(&get(&env, "wsgi.url_scheme")), set.scheme.as_bytes());
    assert!(get(&env, "wsgi.errors").is(&errors));
    assert!(get(&env, "wsgi.file_wrapper").is(&file_wrapper));
    assert_eq!(
        get(&env, "wsgi.multithread").extract::<bool>().unwrap(),
        set.multithread
    );
    assert_eq!(
        get(&env, "wsgi.multiprocess").extract::<bool>().unwrap(),
        set.multiprocess
    );
    assert!(!get(&env, "wsgi.run_once").extract::<bool>().unwrap());
    assert!(get(&env, "wsgi.input_terminated")
        .extract::<bool>()
        .unwrap());
}

fuzz_target!(
    init: {
        Python::initialize();
        sockets();
    },
    |data: &[u8]| {
        let mut input = Input::new(data);
        let limits = limits(&mut input);
        let set = settings(input.byte());
        let which = input.byte();
        let buf = input.rest();
        let mut slots = vec![MaybeUninit::uninit(); limits.fields + 1];
        if let Ok(Some(h)) = head::parse(buf, &mut slots, &limits) {
            Python::attach(|py| check(py, &set, usize::from(which & 3), which >> 2, &h));
        }
    }
);
