//! HTTP/1.1 (RFC 9112), server side: request-head parsing, body framing, the chunked
//! decoder and response-head encoding. No Python here.

pub mod chunked;
pub mod date;
pub mod error;
pub mod forwarded;
pub mod head;
pub mod percent;
pub mod proxy;
pub mod response;
