//! Process supervision helpers the Python master uses (the master itself is
//! `python/ferrule/workers/`).

pub mod files;
