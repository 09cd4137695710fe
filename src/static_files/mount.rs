//! The mount table (`--static /url=dir`): which request paths are static, and where.
//!
//! A request is under a mount when its percent-decoded path equals the mount's prefix or
//! continues it with `/`. Matching decodes on the fly, without allocating; the longest
//! prefix wins when mounts nest.

use std::path::PathBuf;

use crate::http::percent::hex;

/// One `--static URL=DIR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The URL prefix, starting with `/`, without a trailing slash (`/static`).
    pub prefix: Vec<u8>,
    /// The directory, canonical (symlinks resolved) when the server started.
    pub root: PathBuf,
}

/// Every mount, longest prefix first, and the `Cache-Control` value to send.
#[derive(Clone, Debug, Default)]
pub struct Mounts {
    mounts: Vec<Mount>,
    pub cache_control: Option<Vec<u8>>,
}

/// Checks a `Cache-Control` value: no control characters (CR, LF, NUL …).
fn check_header_value(v: &str) -> Result<(), String> {
    if v.trim().is_empty() {
        return Err("empty value".into());
    }
    if v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(format!("control character in {v:?}"));
    }
    Ok(())
}

impl Mounts {
    /// Parses `URL=DIR` specs; each directory must exist (it is canonicalized now).
    pub fn parse(specs: &[String], cache_control: Option<String>) -> Result<Mounts, String> {
        let mut mounts: Vec<Mount> = Vec::with_capacity(specs.len());
        for spec in specs {
            let (url, dir) = spec
                .split_once('=')
                .ok_or_else(|| format!("{spec:?}: expected URL=DIR"))?;
            let prefix = url.trim_end_matches('/');
            if !url.starts_with('/') || prefix.is_empty() {
                return Err(format!(
                    "{spec:?}: the URL must start with '/' and not be '/' alone"
                ));
            }
            if prefix
                .bytes()
                .any(|b| b <= b' ' || b"?#%\\".contains(&b) || b == 0x7f)
                || prefix.split('/').any(|s| s == "." || s == "..")
            {
                return Err(format!(
                    "{spec:?}: the URL may not hold spaces, '?', '#', '%', '\\', or '.' and '..' segments"
                ));
            }
            let root = std::fs::canonicalize(dir).map_err(|e| format!("{spec:?}: {dir}: {e}"))?;
            if !root.is_dir() {
                return Err(format!("{spec:?}: {dir} is not a directory"));
            }
            if mounts.iter().any(|m| m.prefix == prefix.as_bytes()) {
                return Err(format!("{spec:?}: {prefix} is mounted twice"));
            }
            mounts.push(Mount {
                prefix: prefix.as_bytes().to_vec(),
                root,
            });
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.prefix.len()));
        if let Some(v) = &cache_control {
            check_header_value(v).map_err(|e| format!("static_cache_control: {e}"))?;
        }
        Ok(Mounts {
            mounts,
            cache_control: cache_control.map(String::into_bytes),
        })
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.mounts.is_empty()
    }

    /// The mount a request-target is under, and the raw rest of its path (after the
    /// prefix, before any query); `None` for paths outside every mount. A request outside
    /// them costs a short byte comparison per mount: no allocation, no scan of the target.
    #[inline]
    pub fn find<'t>(&self, target: &'t [u8]) -> Option<(&Mount, &'t [u8])> {
        let path = match target.first() {
            Some(b'/') => target,
            _ => absolute_form_path(target)?,
        };
        self.mounts.iter().find_map(|m| {
            let rest = &path[strip_decoded(path, &m.prefix)?..];
            let end = memchr::memchr2(b'?', b'#', rest).unwrap_or(rest.len());
            Some((m, &rest[..end]))
        })
    }
}

/// The path (and query) of an absolute-form request-target (`http://host/p?q`); `None` for
/// the asterisk and authority forms.
fn absolute_form_path(target: &[u8]) -> Option<&[u8]> {
    let scheme = if target.len() > 7 && target[..7].eq_ignore_ascii_case(b"http://") {
        7
    } else if target.len() > 8 && target[..8].eq_ignore_ascii_case(b"https://") {
        8
    } else {
        return None;
    };
    let after = &target[scheme..];
    Some(
        match after.iter().position(|&b| matches!(b, b'/' | b'?' | b'#')) {
            Some(i) if after[i] == b'/' => &after[i..],
            _ => b"/",
        },
    )
}

/// The decoded byte at `path[i]` and how many raw bytes it took (`%XX` or one).
#[inline]
fn decoded_at(path: &[u8], i: usize) -> Option<(u8, usize)> {
    let b = *path.get(i)?;
    if b == b'%' {
        if let (Some(h), Some(l)) = (
            path.get(i + 1).copied().and_then(hex),
            path.get(i + 2).copied().and_then(hex),
        ) {
            return Some((h << 4 | l, 3));
        }
    }
    Some((b, 1))
}

/// If `path`, percent-decoded, starts with `prefix` followed by `/`, the end of the path,
/// or its query (`?`, `#`), the raw index where the rest begins.
#[inline]
fn strip_decoded(path: &[u8], prefix: &[u8]) -> Option<usize> {
    // Up to the first difference the bytes are raw and equal (a prefix holds no '%'); most
    // paths outside the mount stop at once. From there on, escapes are decoded.
    let same = path.iter().zip(prefix).take_while(|(a, b)| a == b).count();
    let mut i = same;
    for &want in &prefix[same..] {
        let (got, used) = decoded_at(path, i)?;
        if got != want {
            return None;
        }
        i += used;
    }
    match path.get(i) {
        None | Some(b'/' | b'?' | b'#') => Some(i),
        Some(b'%') => matches!(decoded_at(path, i), Some((b'/', 3))).then_some(i),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Mounts {
        let dir = std::env::temp_dir();
        let d = dir.to_str().unwrap();
        Mounts::parse(
            &[
                format!("/static={d}"),
                format!("/static/img/={d}"),
                format!("/media={d}"),
            ],
            Some("public, max-age=60".into()),
        )
        .unwrap()
    }

    fn find(m: &Mounts, target: &str) -> Option<(String, String)> {
        m.find(target.as_bytes()).map(|(mount, rest)| {
            (
                String::from_utf8(mount.prefix.clone()).unwrap(),
                String::from_utf8(rest.to_vec()).unwrap(),
            )
        })
    }

    fn some(p: &str, r: &str) -> Option<(String, String)> {
        Some((p.into(), r.into()))
    }

    #[test]
    fn prefixes_match_at_segment_boundaries() {
        let m = table();
        assert_eq!(find(&m, "/static/a.css"), some("/static", "/a.css"));
        assert_eq!(find(&m, "/static"), some("/static", ""));
        assert_eq!(find(&m, "/static/"), some("/static", "/"));
        assert_eq!(find(&m, "/static/a.css?v=1"), some("/static", "/a.css"));
        assert_eq!(find(&m, "/static/img/x.png"), some("/static/img", "/x.png"));
        assert_eq!(find(&m, "/static/imgx.png"), some("/static", "/imgx.png"));
        assert_eq!(find(&m, "/staticfile"), None);
        assert_eq!(find(&m, "/static?x=1"), some("/static", ""));
        assert_eq!(find(&m, "/static#f"), some("/static", ""));
        assert_eq!(find(&m, "/stat"), None);
        assert_eq!(find(&m, ""), None);
        assert_eq!(find(&m, "/Static/a.css"), None);
        assert_eq!(find(&m, "/"), None);
        assert_eq!(find(&m, "/app/static/a"), None);
        assert_eq!(find(&m, "*"), None);
        assert_eq!(find(&m, "example.com:443"), None);
    }

    #[test]
    fn decoded_paths_match() {
        let m = table();
        assert_eq!(find(&m, "/st%61tic/a.css"), some("/static", "/a.css"));
        assert_eq!(find(&m, "/static%2Fa.css"), some("/static", "%2Fa.css"));
        assert_eq!(find(&m, "/static%2e/a"), None);
        assert_eq!(find(&m, "/stat%zzic"), None);
        assert_eq!(find(&m, "/static%3Fx"), None);
        assert_eq!(find(&m, "/st%61tic%2f..%2fa"), some("/static", "%2f..%2fa"));
        assert_eq!(find(&m, "/st%61tic"), some("/static", ""));
        assert_eq!(find(&m, "/st%61"), None);
        assert_eq!(
            find(&m, "http://h.test/static/a.css"),
            some("/static", "/a.css")
        );
        assert_eq!(find(&m, "HTTPS://h.test/media/x?y"), some("/media", "/x"));
        assert_eq!(find(&m, "http://h.test"), None);
        assert_eq!(find(&m, "http://h.test?/static/a"), None);
    }

    #[test]
    fn bad_specs() {
        let d = std::env::temp_dir().to_str().unwrap().to_string();
        for spec in [
            format!("static={d}"),
            format!("/={d}"),
            format!("/a?b={d}"),
            format!("/a/../b={d}"),
            format!("/a%2f={d}"),
            "/a".to_string(),
            "/a=/no/such/dir/ferrule".to_string(),
        ] {
            assert!(
                Mounts::parse(std::slice::from_ref(&spec), None).is_err(),
                "{spec}"
            );
        }
        assert!(Mounts::parse(&[format!("/a={d}"), format!("/a/={d}")], None).is_err());
        assert!(Mounts::parse(&[], Some("a\r\nX: y".into())).is_err());
        assert!(Mounts::parse(&[], None).unwrap().is_empty());
    }
}
