//! The request-head parser, `ferrule::http::head::parse`, on arbitrary bytes under the
//! default limits or small fuzzer-chosen ones.
//!
//! Input: a byte choosing the limits (and, if odd, four bytes of limits), three bytes
//! choosing prefixes to re-parse, then the request bytes.
//!
//! Checks: no panic; an error is one of the statuses the parser may give; a head agrees
//! with its bytes (`ferrule_fuzz::check_head`: request line, field shapes, limits,
//! framing, Host, Connection, Expect); every prefix of a complete head, or of a partial
//! one, parses to "need more" (the server re-parses after each read); the bytes after a
//! head change nothing.
#![no_main]

use ferrule_fuzz::{check_error, check_head, check_prefixes, limits, parse_summary, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let limits = limits(&mut input);
    let cuts = [input.byte(), input.byte(), input.byte()];
    let buf = input.rest();
    match parse_summary(buf, &limits) {
        Ok(whole) => {
            if let Some(s) = &whole {
                check_head(buf, &limits, s);
            }
            check_prefixes(buf, &limits, &whole, &cuts);
        }
        Err(e) => check_error(&e),
    }
});
