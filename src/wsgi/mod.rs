//! The WSGI bridge (PEP 3333): environ, `wsgi.input`, `start_response` and the
//! response writer, `wsgi.file_wrapper`, and calling the app.

pub mod app;
pub mod bytes_tail;
pub mod environ;
pub mod file_wrapper;
pub mod input;
pub mod log;
pub mod output;
pub mod start_response;
pub mod vectorcall;
