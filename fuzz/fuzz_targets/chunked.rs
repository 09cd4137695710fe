//! The chunked decoder, `ferrule::http::chunked::ChunkedDecoder`, fed arbitrary bytes
//! whole and split at fuzzer-chosen points.
//!
//! Input: a byte choosing the limits (odd: three bytes of small limits follow; even:
//! no body limit and trailer limits larger than any input), a byte giving the number of
//! split points (0–7) and two bytes for each, then the body.
//!
//! Checks, on every `step`: consumed <= input, a data range is non-empty, inside the
//! input and ends where the consumption does, a step short of its input only when done,
//! no step after done consumes anything. On the whole run: decoded bytes <= the limit.
//! Differential: the decoded bytes, the bytes consumed and the error are the same
//! whatever the split points; and with no binding limit the outcome (done with the same
//! body and length / invalid / incomplete) is the same as an independent decoder written
//! from RFC 9112 §7.1's grammar (`reference` below).
#![no_main]

use ferrule::http::chunked::ChunkedDecoder;
use ferrule::http::error::HttpError;
use ferrule_fuzz::{is_tchar, Input};
use libfuzzer_sys::fuzz_target;

/// What a run of the decoder over the whole input came to.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    body: Vec<u8>,
    /// Bytes of the input that the decoder consumed.
    used: usize,
    done: bool,
    error: Option<HttpError>,
}

/// Feeds `input` to a new decoder in the pieces that `cuts` (sorted offsets) make.
fn run(input: &[u8], cuts: &[usize], limit: u64, max_trailer: usize, max_field: usize) -> Run {
    let mut d = ChunkedDecoder::new(limit, max_trailer, max_field);
    let mut out = Run {
        body: Vec::new(),
        used: 0,
        done: false,
        error: None,
    };
    let mut start = 0;
    for end in cuts.iter().copied().chain([input.len()]) {
        let piece = &input[start..end];
        start = end;
        let mut off = 0;
        while off < piece.len() && !d.is_done() {
            let rest = &piece[off..];
            let (n, data) = match d.step(rest) {
                Ok(r) => r,
                Err(e) => {
                    // How much was consumed before a refusal depends on where the
                    // failing step started; only the body so far and the error compare.
                    out.error = Some(e);
                    out.used = 0;
                    return out;
                }
            };
            assert!(n <= rest.len(), "consumed {n} of {}", rest.len());
            if let Some(r) = data {
                assert!(r.start < r.end, "empty data range {r:?}");
                assert_eq!(
                    r.end, n,
                    "data range {r:?} does not end the consumption {n}"
                );
                out.body.extend_from_slice(&rest[r]);
            } else {
                assert!(
                    n == rest.len() || d.is_done(),
                    "step stopped at {n} of {} without data or the end",
                    rest.len()
                );
            }
            assert!(n > 0 || d.is_done(), "no progress");
            off += n;
            out.used += n;
        }
        if d.is_done() {
            // Done is final: nothing more is consumed, nothing more decoded.
            assert_eq!(d.step(&input[out.used..]).unwrap(), (0, None));
            assert_eq!(d.step(b"0\r\n\r\n").unwrap(), (0, None));
            out.done = true;
            return out;
        }
    }
    out
}

/// The outcome the grammar gives an input with no binding limit.
#[derive(Debug, PartialEq, Eq)]
enum Ref {
    Done { body: Vec<u8>, used: usize },
    Invalid,
    Incomplete,
}

/// Why the reference stopped.
enum Stop {
    Invalid,
    Incomplete,
}

/// The longest run of extension bytes (after the first `;`, with the CR) the decoder
/// allows; the one limit not set through `new`.
const MAX_EXT: usize = 4096;

/// A recursive-descent decoder of
///
/// ```text
/// chunked-body   = *chunk last-chunk trailer-section CRLF
/// chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// chunk-size     = 1*HEXDIG                                  ; ferrule: at most 16
/// last-chunk     = 1*("0") [ chunk-ext ] CRLF
/// chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// chunk-ext-val  = token / quoted-string
/// trailer-section = *( field-line CRLF )
/// field-line     = field-name ":" OWS field-value OWS
/// ```
///
/// that says `Incomplete` wherever it runs out of input.
struct Reference<'a> {
    s: &'a [u8],
    i: usize,
    /// Extension bytes so far on this size line, when inside extensions.
    ext: Option<usize>,
}

impl Reference<'_> {
    fn peek(&self) -> Result<u8, Stop> {
        self.s.get(self.i).copied().ok_or(Stop::Incomplete)
    }

    fn bump(&mut self) -> Result<(), Stop> {
        self.i += 1;
        if let Some(n) = &mut self.ext {
            *n += 1;
            if *n > MAX_EXT {
                return Err(Stop::Invalid);
            }
        }
        Ok(())
    }

    fn expect(&mut self, b: u8) -> Result<(), Stop> {
        if self.peek()? != b {
            return Err(Stop::Invalid);
        }
        self.bump()
    }

    fn crlf(&mut self) -> Result<(), Stop> {
        self.expect(b'\r')?;
        self.expect(b'\n')
    }

    /// Skips SP / HTAB; whether there was any.
    fn ws(&mut self) -> Result<bool, Stop> {
        let mut any = false;
        while matches!(self.peek()?, b' ' | b'\t') {
            self.bump()?;
            any = true;
        }
        Ok(any)
    }

    fn token(&mut self) -> Result<(), Stop> {
        if !is_tchar(self.peek()?) {
            return Err(Stop::Invalid);
        }
        while is_tchar(self.peek()?) {
            self.bump()?;
        }
        Ok(())
    }

    fn quoted(&mut self) -> Result<(), Stop> {
        self.expect(b'"')?;
        loop {
            match self.peek()? {
                b'"' => return self.bump(),
                b'\\' => {
                    self.bump()?;
                    let b = self.peek()?;
                    if !(b == b'\t' || b == b' ' || (0x21..=0x7E).contains(&b) || b >= 0x80) {
                        return Err(Stop::Invalid);
                    }
                    self.bump()?;
                }
                b'\t' | b' ' | 0x21 | 0x23..=0x5B | 0x5D..=0x7E | 0x80..=0xFF => self.bump()?,
                _ => return Err(Stop::Invalid),
            }
        }
    }

    /// `[ chunk-ext ] CRLF` after the size.
    fn size_line_end(&mut self) -> Result<(), Stop> {
        let mut ws = self.ws()?;
        if self.peek()? == b';' {
            self.bump()?;
            self.ext = Some(0);
            loop {
                self.ws()?;
                self.token()?;
                ws = self.ws()?;
                if self.peek()? == b'=' {
                    self.bump()?;
                    self.ws()?;
                    if self.peek()? == b'"' {
                        self.quoted()?;
                    } else {
                        self.token()?;
                    }
                    ws = self.ws()?;
                }
                if self.peek()? != b';' {
                    break;
                }
                self.bump()?;
            }
            // RFC 9112's grammar has no whitespace between an extension and the CRLF.
            if ws {
                return Err(Stop::Invalid);
            }
        } else if ws {
            // BWS belongs to chunk-ext: only ';' may follow it.
            return Err(Stop::Invalid);
        }
        // The CR still counts towards the extension bytes, the LF no longer does.
        self.expect(b'\r')?;
        self.ext = None;
        self.expect(b'\n')
    }

    fn decode(&mut self) -> Result<Vec<u8>, Stop> {
        let mut body = Vec::new();
        loop {
            let mut size: u64 = 0;
            let mut digits = 0;
            while let Some(d) = (self.peek()? as char).to_digit(16) {
                digits += 1;
                if digits > 16 {
                    return Err(Stop::Invalid);
                }
                size = size << 4 | u64::from(d);
                self.bump()?;
            }
            if digits == 0 {
                return Err(Stop::Invalid);
            }
            self.size_line_end()?;
            if size == 0 {
                break;
            }
            let left = (self.s.len() - self.i) as u64;
            if left < size {
                return Err(Stop::Incomplete);
            }
            body.extend_from_slice(&self.s[self.i..self.i + size as usize]);
            self.i += size as usize;
            self.crlf()?;
        }
        // trailer-section CRLF
        while self.peek()? != b'\r' {
            self.token()?;
            self.expect(b':')?;
            while let b'\t' | b' '..=0x7E | 0x80..=0xFF = self.peek()? {
                self.bump()?;
            }
            self.crlf()?;
        }
        self.crlf()?;
        Ok(body)
    }
}

fn reference(s: &[u8]) -> Ref {
    let mut r = Reference {
        s,
        i: 0,
        ext: None,
    };
    match r.decode() {
        Ok(body) => Ref::Done { body, used: r.i },
        Err(Stop::Invalid) => Ref::Invalid,
        Err(Stop::Incomplete) => Ref::Incomplete,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let small = input.byte() & 1 == 1;
    let (limit, max_trailer, max_field) = if small {
        (
            u64::from(input.byte()),
            usize::from(input.byte()),
            usize::from(input.byte()),
        )
    } else {
        (0, usize::MAX / 2, usize::MAX / 2)
    };
    let n = usize::from(input.byte() % 8);
    let raw_cuts: Vec<u16> = (0..n).map(|_| input.u16()).collect();
    let body = input.rest();
    let mut cuts: Vec<usize> = raw_cuts
        .iter()
        .map(|&c| usize::from(c) % (body.len() + 1))
        .collect();
    cuts.sort_unstable();

    let whole = run(body, &[], limit, max_trailer, max_field);
    if limit > 0 {
        assert!(whole.body.len() as u64 <= limit, "decoded past the limit");
    }
    assert!(whole.used <= body.len());
    if whole.error.is_none() && !whole.done {
        assert_eq!(whole.used, body.len(), "stopped early without an error");
    }
    if let Some(e) = &whole.error {
        assert!(
            matches!(e.status(), 400 | 413 | 431),
            "status {}",
            e.status()
        );
    }

    let split = run(body, &cuts, limit, max_trailer, max_field);
    assert_eq!(whole, split, "split at {cuts:?} changed the outcome");

    if !small {
        let expected = reference(body);
        let got = match (&whole.error, whole.done) {
            (Some(_), _) => Ref::Invalid,
            (None, true) => Ref::Done {
                body: whole.body.clone(),
                used: whole.used,
            },
            (None, false) => Ref::Incomplete,
        };
        assert_eq!(got, expected, "decoder {whole:?} against the grammar");
    }
});
