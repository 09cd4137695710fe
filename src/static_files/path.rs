//! Safe resolution of a request path under a mount's root.
//!
//! The rest of the path after the mount prefix is split on `/` *before* percent-decoding,
//! then each segment is decoded on its own. A segment is refused when it decodes to `.` or
//! `..`, or holds `/` (an encoded slash), `\` or NUL; a malformed escape (`%zz`, a `%` at the
//! end) is a 400. The file is then found with `realpath(3)`: a path whose real location is
//! not inside the (canonical) root — a symlink pointing out of it — is refused like a
//! missing file, while a symlink inside the root pointing inside it is followed. Only a
//! regular file is served: directories, devices, FIFOs and sockets are 404.

use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::http::percent::hex;

/// Why a path was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No regular file there, or a path that may not be served (traversal, symlink out).
    NotFound,
    /// A malformed percent-encoding.
    BadRequest,
}

/// Decodes one path segment strictly: every `%` must start a `%XX` escape.
fn decode_segment(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Refusal> {
    out.clear();
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let h = raw.get(i + 1).copied().and_then(hex);
            let l = raw.get(i + 2).copied().and_then(hex);
            match (h, l) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(Refusal::BadRequest),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(())
}

/// The relative file path named by `rest`, the raw (still percent-encoded) part of the
/// request path after the mount prefix (`/css/site.css`). Empty segments (`//`) are skipped;
/// a path naming no segment at all is the mount's root directory, so `NotFound`.
pub fn relative(rest: &[u8]) -> Result<PathBuf, Refusal> {
    let mut rel = PathBuf::new();
    let mut seg = Vec::new();
    for raw in rest.split(|&b| b == b'/') {
        if raw.is_empty() {
            continue;
        }
        decode_segment(raw, &mut seg)?;
        if seg == b"." || seg == b".." || seg.iter().any(|&b| matches!(b, b'/' | b'\\' | 0)) {
            return Err(Refusal::NotFound);
        }
        rel.push(OsStr::from_bytes(&seg));
    }
    if rel.as_os_str().is_empty() {
        return Err(Refusal::NotFound);
    }
    Ok(rel)
}

/// An open regular file under `root` (a canonical path) and its metadata.
pub fn open(root: &Path, rel: &Path) -> Result<(File, Metadata), Refusal> {
    let real = std::fs::canonicalize(root.join(rel)).map_err(|_| Refusal::NotFound)?;
    // Component-wise: /srv/static2 does not start with /srv/static.
    if !real.starts_with(root) {
        return Err(Refusal::NotFound);
    }
    // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below);
    // it changes nothing for regular files. O_NOFOLLOW: `real` has no symlink left.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(&real)
        .map_err(|_| Refusal::NotFound)?;
    let meta = file.metadata().map_err(|_| Refusal::NotFound)?;
    if !meta.is_file() {
        return Err(Refusal::NotFound);
    }
    Ok((file, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> Result<PathBuf, Refusal> {
        relative(s.as_bytes())
    }

    #[test]
    fn plain_and_encoded_names() {
        assert_eq!(rel("/css/site.css"), Ok(PathBuf::from("css/site.css")));
        assert_eq!(rel("/a%20b.txt"), Ok(PathBuf::from("a b.txt")));
        assert_eq!(rel("//x///y"), Ok(PathBuf::from("x/y")));
        assert_eq!(rel("/.well-known/x"), Ok(PathBuf::from(".well-known/x")));
        assert_eq!(rel("/%C3%A9.txt"), Ok(PathBuf::from("é.txt")));
        assert_eq!(rel("/a..b"), Ok(PathBuf::from("a..b")));
    }

    #[test]
    fn traversal_is_refused() {
        for bad in [
            "/../secret",
            "/%2e%2e/secret",
            "/%2E%2E/secret",
            "/.%2e/secret",
            "/..%2fsecret",
            "/a%2f..%2f..%2fsecret",
            "/a%2Fb",
            "/..\\secret",
            "/a%5c..%5csecret",
            "/a%00b",
            "/./x",
            "/x/..",
        ] {
            assert_eq!(rel(bad), Err(Refusal::NotFound), "{bad}");
        }
    }

    #[test]
    fn root_and_empty_are_not_files() {
        assert_eq!(rel(""), Err(Refusal::NotFound));
        assert_eq!(rel("/"), Err(Refusal::NotFound));
        assert_eq!(rel("///"), Err(Refusal::NotFound));
    }

    #[test]
    fn malformed_escapes_are_bad_requests() {
        for bad in ["/a%zz", "/a%4", "/a%", "/%g0"] {
            assert_eq!(rel(bad), Err(Refusal::BadRequest), "{bad}");
        }
    }

    #[test]
    fn symlinks_inside_only() {
        let base = std::env::temp_dir().join(format!("ferrule-path-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/file.txt"), b"in").unwrap();
        std::fs::write(base.join("secret"), b"out").unwrap();
        let link = |target: &Path, name: &str| {
            let _ = std::fs::remove_file(root.join(name));
            std::os::unix::fs::symlink(target, root.join(name)).unwrap();
        };
        link(Path::new("sub/file.txt"), "inside");
        link(&base.join("secret"), "outside");
        link(Path::new("../secret"), "outside-rel");
        link(&root.join("sub"), "subdir");
        let root = std::fs::canonicalize(&root).unwrap();
        assert!(open(&root, Path::new("sub/file.txt")).is_ok());
        assert!(open(&root, Path::new("inside")).is_ok());
        assert!(open(&root, Path::new("subdir/file.txt")).is_ok());
        assert_eq!(
            open(&root, Path::new("outside")).err(),
            Some(Refusal::NotFound)
        );
        assert_eq!(
            open(&root, Path::new("outside-rel")).err(),
            Some(Refusal::NotFound)
        );
        assert_eq!(open(&root, Path::new("sub")).err(), Some(Refusal::NotFound));
        assert_eq!(
            open(&root, Path::new("missing")).err(),
            Some(Refusal::NotFound)
        );
        let _ = std::fs::remove_dir_all(&base);
    }
}
