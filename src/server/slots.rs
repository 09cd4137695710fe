//! The connection table: slots addressed by epoll tokens, each with its own lock.
//!
//! A token is `generation << 32 | index`; closing a connection bumps the slot's
//! generation, so a stale event for a reused slot is recognised and dropped.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use super::conn::Conn;

const CHUNK: usize = 1024;
/// Generations wrap at 30 bits, leaving a token's top two bits free.
const GENERATION_MASK: u32 = (1 << 30) - 1;
const MAX_CHUNKS: usize = 1024;

/// One connection's place in the table.
pub struct Slot {
    pub conn: Mutex<Option<Conn>>,
    /// Set by whoever saw readiness while another thread held the connection.
    pub pending: AtomicBool,
    /// An event reported the peer's hang-up while another thread held the connection.
    pub hup: AtomicBool,
    pub generation: AtomicU32,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            conn: Mutex::new(None),
            pending: AtomicBool::new(false),
            hup: AtomicBool::new(false),
            generation: AtomicU32::new(0),
        }
    }
}

pub struct Slots {
    chunks: Vec<OnceLock<Box<[Slot]>>>,
    free: Mutex<Vec<u32>>,
    next: AtomicU32,
    capacity: usize,
    /// Slots handed out and not released: the open connections.
    live: AtomicUsize,
}

impl Slots {
    /// A table for up to `capacity` connections (allocated lazily, 1024 at a time).
    pub fn new(capacity: usize) -> Slots {
        let capacity = capacity.clamp(1, CHUNK * MAX_CHUNKS);
        Slots {
            chunks: (0..capacity.div_ceil(CHUNK))
                .map(|_| OnceLock::new())
                .collect(),
            free: Mutex::new(Vec::new()),
            next: AtomicU32::new(0),
            capacity,
            live: AtomicUsize::new(0),
        }
    }

    pub fn get(&self, index: u32) -> Option<&Slot> {
        let i = index as usize;
        self.chunks.get(i / CHUNK)?.get().map(|c| &c[i % CHUNK])
    }

    /// The slot a connection token names, if the token is current. The token's top two
    /// bits are not part of it (the pool flags listeners and hang-ups with them).
    pub fn by_token(&self, token: u64) -> Option<(u32, &Slot)> {
        let index = token as u32;
        let generation = (token >> 32) as u32 & GENERATION_MASK;
        let slot = self.get(index)?;
        (slot.generation.load(Ordering::Acquire) & GENERATION_MASK == generation)
            .then_some((index, slot))
    }

    pub fn token(&self, index: u32) -> u64 {
        let generation = self
            .get(index)
            .map_or(0, |s| s.generation.load(Ordering::Acquire));
        (u64::from(generation & GENERATION_MASK) << 32) | u64::from(index)
    }

    /// Reserves a free slot index, or `None` when the table is full.
    pub fn alloc(&self) -> Option<u32> {
        let i = self.alloc_index()?;
        self.live.fetch_add(1, Ordering::AcqRel);
        Some(i)
    }

    /// Open connections.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    fn alloc_index(&self) -> Option<u32> {
        if let Some(i) = self.free.lock().ok()?.pop() {
            return Some(i);
        }
        let i = self.next.fetch_add(1, Ordering::AcqRel);
        if i as usize >= self.capacity {
            self.next.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let chunk = self.chunks.get(i as usize / CHUNK)?;
        chunk.get_or_init(|| (0..CHUNK).map(|_| Slot::new()).collect());
        Some(i)
    }

    /// Returns a slot whose connection was taken out; its old token becomes stale.
    pub fn release(&self, index: u32) {
        if let Some(slot) = self.get(index) {
            slot.generation.fetch_add(1, Ordering::AcqRel);
            slot.pending.store(false, Ordering::Release);
            slot.hup.store(false, Ordering::Release);
        }
        self.live.fetch_sub(1, Ordering::AcqRel);
        if let Ok(mut free) = self.free.lock() {
            free.push(index);
        }
    }

    /// One past the highest index ever handed out.
    pub fn high_water(&self) -> u32 {
        self.next.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_go_stale_on_release() {
        let s = Slots::new(10);
        let i = s.alloc().unwrap();
        let t = s.token(i);
        assert!(s.by_token(t).is_some());
        s.release(i);
        assert!(s.by_token(t).is_none());
        let j = s.alloc().unwrap();
        assert_eq!(i, j);
        assert!(s.by_token(s.token(j)).is_some());
    }

    #[test]
    fn capacity_is_enforced() {
        let s = Slots::new(2);
        assert!(s.alloc().is_some());
        assert!(s.alloc().is_some());
        assert!(s.alloc().is_none());
    }
}
