//! Response heads for static files: the status, the header lines, the content type.

use std::path::Path;

use crate::http::date;
use crate::http::response::{write_head, BodyFraming};

/// The reason phrase of the statuses a static response can have.
pub fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        _ => "Internal Server Error",
    }
}

/// A response head being built: the status and the header lines (`Name: value\r\n`), which
/// the access log also reads (`%({name}o)s`).
#[derive(Debug)]
pub struct Head {
    pub code: u16,
    pub lines: Vec<u8>,
}

impl Head {
    pub fn new(code: u16) -> Head {
        Head {
            code,
            lines: Vec::with_capacity(256),
        }
    }

    pub fn field(&mut self, name: &str, value: &[u8]) -> &mut Head {
        self.lines.extend_from_slice(name.as_bytes());
        self.lines.extend_from_slice(b": ");
        self.lines.extend_from_slice(value);
        self.lines.extend_from_slice(b"\r\n");
        self
    }

    pub fn number(&mut self, name: &str, n: u64) -> &mut Head {
        self.field(name, itoa::Buffer::new().format(n).as_bytes())
    }

    pub fn date(&mut self, name: &str, secs: u64) -> &mut Head {
        self.field(name, &date::format(secs))
    }

    /// The complete head: status line, `Server`, `Date`, the lines, and `Connection` when
    /// the default of the protocol version does not apply.
    pub fn encode(&self, http11: bool, keep_alive: bool) -> Vec<u8> {
        let connection: Option<&'static [u8]> = match (http11, keep_alive) {
            (true, true) => None,
            (_, false) => Some(b"close"),
            (false, true) => Some(b"keep-alive"),
        };
        let mut status = Vec::with_capacity(32);
        status.extend_from_slice(itoa::Buffer::new().format(self.code).as_bytes());
        status.push(b' ');
        status.extend_from_slice(reason(self.code).as_bytes());
        let mut out = Vec::new();
        date::with_now(|now| {
            // The lines carry their own Content-Length: "the app gave the length".
            write_head(
                &mut out,
                &status,
                &self.lines,
                now,
                BodyFraming::NoBody,
                true,
                connection,
            )
        });
        out
    }
}

/// The `Content-Type` of a file, from its extension (`mime_guess`); text types, and
/// JavaScript, get `; charset=utf-8`. Unknown extensions are `application/octet-stream`.
pub fn content_type(name: &Path) -> Vec<u8> {
    let mime = mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let mut out = Vec::with_capacity(mime.len() + 15);
    out.extend_from_slice(mime.as_bytes());
    if mime.starts_with("text/") || mime == "application/javascript" {
        out.extend_from_slice(b"; charset=utf-8");
    }
    out
}

/// The plain-text body of an error status (400, 404, 405, 412, 416).
pub fn error_body(code: u16) -> String {
    format!("{code} {}\n", reason(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(name: &str) -> String {
        String::from_utf8(content_type(Path::new(name))).unwrap()
    }

    #[test]
    fn content_types() {
        assert_eq!(ct("a/site.css"), "text/css; charset=utf-8");
        assert_eq!(ct("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(ct("index.HTML"), "text/html; charset=utf-8");
        assert_eq!(ct("logo.png"), "image/png");
        assert_eq!(ct("data.json"), "application/json");
        assert_eq!(ct("font.woff2"), "font/woff2");
        assert_eq!(ct("blob"), "application/octet-stream");
        assert_eq!(ct("x.unknownext"), "application/octet-stream");
    }

    #[test]
    fn head_layout() {
        let mut h = Head::new(206);
        h.number("Content-Length", 10).field("ETag", b"\"t\"");
        let out = String::from_utf8(h.encode(true, true)).unwrap();
        assert!(out.starts_with("HTTP/1.1 206 Partial Content\r\nServer: ferrule\r\nDate: "));
        assert!(out.ends_with("\r\nContent-Length: 10\r\nETag: \"t\"\r\n\r\n"));
        let out = String::from_utf8(h.encode(true, false)).unwrap();
        assert!(out.ends_with("ETag: \"t\"\r\nConnection: close\r\n\r\n"));
        let out = String::from_utf8(h.encode(false, true)).unwrap();
        assert!(out.ends_with("Connection: keep-alive\r\n\r\n"));
        assert_eq!(h.lines, b"Content-Length: 10\r\nETag: \"t\"\r\n");
    }
}
