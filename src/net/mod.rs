//! The network layer: raw sockets, the epoll poller and the listening sockets.
//!
//! Everything that touches a file descriptor through `libc` lives here, so the
//! rest of the crate works with safe wrappers.

pub mod allow;
pub mod event;
pub mod file_tail;
pub mod listener;
pub mod poller;
pub mod socket;
