//! Job ids in flight and duplicate suppression, without allocation.
//!
//! Chips echo a 5-bit job id, so at most 32 jobs can be told apart. A slot keeps its job until the
//! id comes round again (ESP-Miner keeps the same history) or until [`JobTracker::clear`] on a new
//! block, after which late nonces for old work find an empty slot and count as stale.

use crate::job::JOB_ID_COUNT;

/// Jobs in flight by id.
#[derive(Debug, Clone)]
pub struct JobTracker<T> {
    slots: [Option<T>; JOB_ID_COUNT as usize],
    next_id: u8,
    ids: u8,
}

impl<T> Default for JobTracker<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> JobTracker<T> {
    /// An empty table using all 32 ids.
    pub fn new() -> Self {
        Self::with_ids(JOB_ID_COUNT)
    }

    /// An empty table cycling through the first `ids` ids (1..=32), e.g.
    /// [`crate::model::ChipModel::job_id_count`].
    pub fn with_ids(ids: u8) -> Self {
        JobTracker {
            slots: core::array::from_fn(|_| None),
            next_id: 0,
            ids: ids.clamp(1, JOB_ID_COUNT),
        }
    }

    /// Store `job` under the next id and return the id.
    pub fn insert(&mut self, job: T) -> u8 {
        let id = self.next_id;
        self.slots[usize::from(id)] = Some(job);
        self.next_id = (id + 1) % self.ids;
        id
    }

    /// Replace the job stored under `id` (ids above 31 are ignored).
    pub fn insert_at(&mut self, id: u8, job: T) {
        if let Some(slot) = self.slots.get_mut(usize::from(id)) {
            *slot = Some(job);
        }
    }

    /// The job a chip's reply names, if it is still in flight.
    pub fn get(&self, id: u8) -> Option<&T> {
        self.slots.get(usize::from(id)).and_then(Option::as_ref)
    }

    /// Forget every job (new block: anything still arriving is stale).
    pub fn clear(&mut self) {
        for slot in &mut self.slots {
            *slot = None;
        }
    }

    /// Jobs currently held.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Whether no job is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Remembers the last `N` (job, version, nonce) triples to drop repeats: BM1397 repeats nonces
/// (ESP-Miner drops them), and a chip that runs out of work re-hashes the same headers.
#[derive(Debug, Clone)]
pub struct RecentNonces<const N: usize> {
    ring: heapless::Deque<(u8, u32, u32), N>,
}

impl<const N: usize> Default for RecentNonces<N> {
    fn default() -> Self {
        RecentNonces {
            ring: heapless::Deque::new(),
        }
    }
}

impl<const N: usize> RecentNonces<N> {
    /// Record a nonce; returns `false` if the same one was seen recently.
    pub fn insert(&mut self, job_id: u8, version: u32, nonce: u32) -> bool {
        let key = (job_id, version, nonce);
        if self.ring.iter().any(|k| *k == key) {
            return false;
        }
        if self.ring.is_full() {
            self.ring.pop_front();
        }
        // Cannot fail: one slot was just freed if the ring was full.
        let _ = self.ring.push_back(key);
        true
    }

    /// Forget everything.
    pub fn clear(&mut self) {
        self.ring.clear();
    }
}
