//! One error type for every way a request can be refused, each knowing its status.

use std::fmt;

/// Why a request was refused; [`HttpError::status`] is the response code to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// Malformed syntax or ambiguous framing (400).
    BadRequest(&'static str),
    /// The client took too long to send the request (408).
    Timeout,
    /// The body is larger than `limit_request_body` (413).
    BodyTooLarge,
    /// The request line is longer than `limit_request_line` (414).
    UriTooLong,
    /// Expect with something other than 100-continue (417).
    ExpectationFailed,
    /// Too many header fields, or one too large (431).
    HeadersTooLarge(&'static str),
    /// A transfer coding we do not implement (501).
    NotImplemented(&'static str),
    /// A major HTTP version other than 1 (505).
    VersionNotSupported,
}

impl HttpError {
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::Timeout => 408,
            HttpError::BodyTooLarge => 413,
            HttpError::UriTooLong => 414,
            HttpError::ExpectationFailed => 417,
            HttpError::HeadersTooLarge(_) => 431,
            HttpError::NotImplemented(_) => 501,
            HttpError::VersionNotSupported => 505,
        }
    }

    /// The status line's reason phrase.
    pub fn reason(&self) -> &'static str {
        match self {
            HttpError::BadRequest(_) => "Bad Request",
            HttpError::Timeout => "Request Timeout",
            HttpError::BodyTooLarge => "Content Too Large",
            HttpError::UriTooLong => "URI Too Long",
            HttpError::ExpectationFailed => "Expectation Failed",
            HttpError::HeadersTooLarge(_) => "Request Header Fields Too Large",
            HttpError::NotImplemented(_) => "Not Implemented",
            HttpError::VersionNotSupported => "HTTP Version Not Supported",
        }
    }

    pub fn detail(&self) -> &'static str {
        match self {
            HttpError::BadRequest(d)
            | HttpError::HeadersTooLarge(d)
            | HttpError::NotImplemented(d) => d,
            HttpError::Timeout => "request not received in time",
            HttpError::BodyTooLarge => "request body exceeds limit_request_body",
            HttpError::UriTooLong => "request line exceeds limit_request_line",
            HttpError::ExpectationFailed => "unsupported expectation",
            HttpError::VersionNotSupported => "HTTP major version is not 1",
        }
    }

    /// The plain-text body describing the error.
    pub fn body(&self) -> String {
        format!("{} {}: {}\n", self.status(), self.reason(), self.detail())
    }

    /// A complete `Connection: close` response describing the error.
    pub fn response(&self, date: &[u8]) -> Vec<u8> {
        let body = self.body();
        let mut out = Vec::with_capacity(160 + body.len());
        out.extend_from_slice(
            format!(
                "HTTP/1.1 {} {}\r\nServer: ferrule\r\nDate: ",
                self.status(),
                self.reason()
            )
            .as_bytes(),
        );
        out.extend_from_slice(date);
        out.extend_from_slice(
            format!(
                "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(body.as_bytes());
        out
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.status(), self.reason(), self.detail())
    }
}

impl std::error::Error for HttpError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_is_complete_and_closes() {
        let r = HttpError::UriTooLong.response(b"Thu, 01 Jan 1970 00:00:00 GMT");
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 414 URI Too Long\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}
