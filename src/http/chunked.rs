//! The chunked transfer coding decoder (RFC 9112 §7.1), strict about framing.
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! ```
//!
//! Every line must end in CRLF: a bare LF or CR inside chunk framing is refused, as are
//! sizes over 16 hex digits and control bytes in extensions. Trailer fields are
//! validated and discarded (WSGI has no place for them).

use std::ops::Range;

use super::error::HttpError;

const MAX_EXT: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits; `digits` so far.
    Size {
        digits: u8,
    },
    /// After the size: `;`, CR, or whitespace that must lead to `;`.
    AfterSize,
    /// Whitespace after the size (BWS): only `;` may follow.
    SizeWs,
    /// Inside chunk extensions, until CR.
    Ext(Ext),
    /// Expect LF ending the size line.
    SizeLf,
    /// This many data bytes left in the chunk.
    Data(u64),
    /// Expect CR then LF after the data.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    /// Inside a trailer field line.
    TrailerLine {
        name: bool,
        len: usize,
    },
    TrailerLf,
    /// Expect the LF of the final CRLF.
    EndLf,
    Done,
}

/// Where in `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )` we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ext {
    /// After `;`: whitespace, then a name.
    NameStart,
    Name,
    /// Whitespace after a name: `=` or `;` may follow, not the end.
    AfterName,
    /// After `=`: whitespace, then a token or a quoted string.
    ValueStart,
    Token,
    Quoted,
    QuotedEscape,
    /// Right after a quoted value: whitespace, `;` or the end.
    AfterValue,
    /// Whitespace after a value: more of it or `;` (BWS only comes before `;` or `=`).
    ValueWs,
}

/// The next extension state after byte `b`, `None` if `b` is not allowed there; CR
/// (the end of the line) is handled by the caller, where the grammar allows it.
fn ext_step(at: Ext, b: u8) -> Option<Ext> {
    let ws = b == b' ' || b == b'\t';
    let qdtext =
        ws || b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b) || b >= 0x80;
    Some(match at {
        Ext::NameStart if ws => Ext::NameStart,
        Ext::NameStart | Ext::Name if is_tchar(b) => Ext::Name,
        Ext::Name | Ext::AfterName if ws => Ext::AfterName,
        Ext::Name | Ext::AfterName if b == b'=' => Ext::ValueStart,
        Ext::ValueStart if ws => Ext::ValueStart,
        Ext::ValueStart if b == b'"' => Ext::Quoted,
        Ext::ValueStart | Ext::Token if is_tchar(b) => Ext::Token,
        Ext::Quoted if b == b'"' => Ext::AfterValue,
        Ext::Quoted if b == b'\\' => Ext::QuotedEscape,
        Ext::Quoted if qdtext => Ext::Quoted,
        Ext::QuotedEscape if ws || (0x21..=0x7E).contains(&b) || b >= 0x80 => Ext::Quoted,
        Ext::Token | Ext::AfterValue | Ext::ValueWs if ws => Ext::ValueWs,
        Ext::Name | Ext::AfterName | Ext::Token | Ext::AfterValue | Ext::ValueWs if b == b';' => {
            Ext::NameStart
        }
        _ => return None,
    })
}

/// Incremental decoder; feed it bytes with [`ChunkedDecoder::step`].
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    ext: usize,
    trailer_bytes: usize,
    max_trailer: usize,
    max_field: usize,
    body: u64,
    limit: u64,
}

fn bad(msg: &'static str) -> HttpError {
    HttpError::BadRequest(msg)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl ChunkedDecoder {
    /// `limit` caps the decoded body (0: none); the trailer section is capped at
    /// `max_trailer` bytes and each field at `max_field`.
    pub fn new(limit: u64, max_trailer: usize, max_field: usize) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            size: 0,
            ext: 0,
            trailer_bytes: 0,
            max_trailer,
            max_field,
            body: 0,
            limit,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes framing from `input` up to the next run of chunk data.
    ///
    /// Returns how many bytes were consumed and, if data was reached, its range in
    /// `input` (already counted as consumed). `(n, None)` with `n == input.len()` means
    /// more input is needed, unless [`is_done`](Self::is_done).
    pub fn step(&mut self, input: &[u8]) -> Result<(usize, Option<Range<usize>>), HttpError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Done => return Ok((i, None)),
                State::Data(left) => {
                    let n = left.min((input.len() - i) as u64) as usize;
                    self.state = if n as u64 == left {
                        State::DataCr
                    } else {
                        State::Data(left - n as u64)
                    };
                    return Ok((i + n, Some(i..i + n)));
                }
                State::Size { digits } => {
                    if let Some(d) = (b as char).to_digit(16) {
                        if digits >= 16 {
                            return Err(bad("chunk size too large"));
                        }
                        self.size = self.size << 4 | u64::from(d);
                        self.state = State::Size { digits: digits + 1 };
                    } else if digits == 0 {
                        return Err(bad("invalid chunk size"));
                    } else {
                        self.state = State::AfterSize;
                        continue; // re-examine b
                    }
                }
                State::AfterSize | State::SizeWs => match b {
                    b' ' | b'\t' => self.state = State::SizeWs,
                    b';' => {
                        self.ext = 0;
                        self.state = State::Ext(Ext::NameStart);
                    }
                    b'\r' if self.state == State::AfterSize => self.state = State::SizeLf,
                    _ => return Err(bad("invalid chunk size line")),
                },
                State::Ext(at) => {
                    self.ext += 1;
                    if self.ext > MAX_EXT {
                        return Err(bad("chunk extension too long"));
                    }
                    let ends = matches!(at, Ext::Name | Ext::Token | Ext::AfterValue);
                    self.state = match (b, ext_step(at, b)) {
                        (b'\r', _) if ends => State::SizeLf,
                        (_, Some(next)) => State::Ext(next),
                        _ => return Err(bad("invalid chunk extension")),
                    };
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(bad("chunk size line not ended by CRLF"));
                    }
                    if self.size == 0 {
                        self.state = State::TrailerStart;
                    } else {
                        self.body = self.body.saturating_add(self.size);
                        if self.limit > 0 && self.body > self.limit {
                            return Err(HttpError::BodyTooLarge);
                        }
                        self.state = State::Data(self.size);
                    }
                    self.size = 0;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(bad("chunk data not followed by CRLF"));
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(bad("chunk data not followed by CRLF"));
                    }
                    self.state = State::Size { digits: 0 };
                }
                State::TrailerStart => match b {
                    b'\r' => self.state = State::EndLf,
                    _ if is_tchar(b) => {
                        self.state = State::TrailerLine { name: true, len: 1 };
                        self.trailer_bytes += 1;
                    }
                    _ => return Err(bad("invalid trailer field")),
                },
                State::TrailerLine { name, len } => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > self.max_trailer || len + 1 > self.max_field {
                        return Err(HttpError::HeadersTooLarge("trailer section too large"));
                    }
                    let name = match (name, b) {
                        (_, b'\r') if !name => {
                            self.state = State::TrailerLf;
                            i += 1;
                            continue;
                        }
                        (true, b':') => false,
                        (true, _) if is_tchar(b) => true,
                        (true, _) => return Err(bad("invalid trailer field name")),
                        (false, b'\t') | (false, b' '..=126) | (false, 128..=255) => false,
                        (false, _) => return Err(bad("invalid trailer field value")),
                    };
                    self.state = State::TrailerLine { name, len: len + 1 };
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(bad("trailer field not ended by CRLF"));
                    }
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(bad("chunked body not ended by CRLF"));
                    }
                    self.state = State::Done;
                    return Ok((i + 1, None));
                }
            }
            i += 1;
        }
        Ok((i, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `split` bytes; returns the body.
    fn decode(input: &[u8], split: usize) -> Result<(Vec<u8>, usize), HttpError> {
        let mut d = ChunkedDecoder::new(0, 8192, 8192);
        let mut out = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut used_total = 0;
        while !d.is_done() {
            if buf.is_empty() {
                if fed == input.len() {
                    return Err(HttpError::BadRequest("incomplete"));
                }
                let end = (fed + split).min(input.len());
                buf.extend_from_slice(&input[fed..end]);
                fed = end;
            }
            let (used, data) = d.step(&buf)?;
            if let Some(r) = data {
                out.extend_from_slice(&buf[r]);
            }
            buf.drain(..used);
            used_total += used;
        }
        Ok((out, used_total))
    }

    #[test]
    fn decodes_in_any_split() {
        let msg = b"5\r\nhello\r\n6;name=val\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\nNEXT";
        for split in [1, 2, 3, 7, 100] {
            let (body, used) = decode(msg, split).unwrap();
            assert_eq!(body, b"hello world");
            assert_eq!(used, msg.len() - 4);
        }
    }

    #[test]
    fn refuses_bad_framing() {
        let cases: &[&[u8]] = &[
            b"5\nhello\r\n0\r\n\r\n",          // bare LF after size
            b"5\r\nhello\n0\r\n\r\n",          // bare LF after data
            b"5\r\nhelloXX0\r\n\r\n",          // data longer than size
            b"x\r\n",                          // not hex
            b"-5\r\nhello\r\n0\r\n\r\n",       // sign
            b"0x5\r\nhello\r\n0\r\n\r\n",      // 0x prefix
            b"11111111111111111\r\n",          // 17 digits
            b"5 \r\nhello\r\n0\r\n\r\n",       // BWS is only allowed before ';'
            b"5;a\x01b\r\nhello\r\n0\r\n\r\n", // control byte in extension
            b"5\r\nhello\r\n0\r\nBad Trailer\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\r\r",
            b"5;\r\nhello\r\n0\r\n\r\n",    // extension without a name
            b"5;=1\r\nhello\r\n0\r\n\r\n",  // value without a name
            b"5;a b\r\nhello\r\n0\r\n\r\n", // two names, no separator
            b"5;a=\"open\r\nhello\r\n0\r\n\r\n", // unterminated quoted string
            b"5;a=\r\nhello\r\n0\r\n\r\n",  // '=' without a value
            b"5;a=b c\r\nhello\r\n0\r\n\r\n", // two values
        ];
        for c in cases {
            let r = decode(c, 1);
            assert!(r.is_err(), "accepted {:?}", String::from_utf8_lossy(c));
        }
    }

    #[test]
    fn accepts_every_extension_form() {
        let ok: &[&[u8]] = &[
            b"5;a\r\nhello\r\n0\r\n\r\n",
            b"5 ; a = b ; c\r\nhello\r\n0;last\r\n\r\n",
            b"5;a=\"q \\\" ;x\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=b;c=\"\"\r\nhello\r\n0\r\n\r\n",
        ];
        for c in ok {
            let (body, _) = decode(c, 1).unwrap_or_else(|e| panic!("{e} for {c:?}"));
            assert_eq!(body, b"hello");
        }
    }

    #[test]
    fn no_whitespace_between_the_last_extension_and_the_line_end() {
        // RFC 9112 7.1.1: BWS only before ";" or "=" (found by fuzzing:
        // fuzz/regressions/chunked-ext-trailing-ws).
        for bad in [
            &b"5;a \r\nhello\r\n0\r\n\r\n"[..],
            b"5;n=v   \r\nhello\r\n0\r\n\r\n",
            b"5;a=\"q\"\t\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(
                decode(bad, 1).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for good in [
            &b"5;a ;b\r\nhello\r\n0\r\n\r\n"[..],
            b"5;n=v \t;m\r\nhello\r\n0\r\n\r\n",
        ] {
            assert_eq!(decode(good, 1).map(|(b, _)| b), Ok(b"hello".to_vec()));
        }
    }

    #[test]
    fn body_limit() {
        let mut d = ChunkedDecoder::new(4, 8192, 8192);
        assert_eq!(d.step(b"5\r\n").unwrap_err().status(), 413);
    }
}
