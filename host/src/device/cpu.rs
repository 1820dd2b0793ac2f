//! SHA-256 on the CPU. Each thread takes every `threads`-th nonce of the current job; when a
//! job's nonces run out the thread takes a fresh job (new extranonce) rather than rolling the
//! version, so CPU shares never touch version bits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bm13xx::sim::sha256d::{TailWords, sha256d_lanes, state_zero_bits};
use bm13xx::verify::midstate;

use super::{Device, DeviceContext};
use crate::events::Event;
use crate::share::{Found, Threshold};
use crate::work::{Job, JobFactory, TemplateWork};

/// The CPU miner.
#[derive(Debug, Clone)]
pub struct CpuDevice {
    /// Hashing threads.
    pub threads: usize,
    /// Leading zero bits a result must have to be reported.
    pub share_bits: u32,
}

struct Shared {
    work: Mutex<Option<Arc<TemplateWork>>>,
    generation: AtomicU64,
    factory: Mutex<JobFactory>,
}

impl Device for CpuDevice {
    async fn run(&mut self, ctx: &mut DeviceContext) -> anyhow::Result<()> {
        let factory = std::mem::replace(
            &mut ctx.factory,
            JobFactory::new(0, Arc::new(AtomicU64::new(0)), 0),
        );
        let shared = Arc::new(Shared {
            work: Mutex::new(ctx.work.borrow_and_update().clone()),
            generation: AtomicU64::new(1),
            factory: Mutex::new(factory),
        });
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut threads = Vec::new();
        for t in 0..self.threads {
            let (shared, stop, found) = (shared.clone(), stop.clone(), ctx.found.clone());
            let (index, name, bits, count) = (
                ctx.index,
                ctx.name.clone(),
                self.share_bits,
                self.threads as u32,
            );
            threads.push(std::thread::spawn(move || {
                hash_thread(t as u32, count, bits, index, name, shared, stop, found)
            }));
        }
        let _ = ctx.events.send(Event::DeviceUp {
            device: ctx.name.clone(),
            detail: format!("cpu, {} threads", self.threads),
        });
        loop {
            tokio::select! {
                _ = ctx.cancel.cancelled() => break,
                changed = ctx.work.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    if let Ok(mut w) = shared.work.lock() {
                        *w = ctx.work.borrow_and_update().clone();
                    }
                    shared.generation.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        // Give the factory back so a restart continues the extranonce sequence.
        if let Ok(mut f) = shared.factory.lock() {
            ctx.factory =
                std::mem::replace(&mut *f, JobFactory::new(0, Arc::new(AtomicU64::new(0)), 0));
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn hash_thread(
    thread: u32,
    threads: u32,
    share_bits: u32,
    device: usize,
    device_name: String,
    shared: Arc<Shared>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    found: super::ResultSender,
) {
    while !stop.load(Ordering::Relaxed) {
        let generation = shared.generation.load(Ordering::SeqCst);
        let work = shared.work.lock().ok().and_then(|w| w.clone());
        let Some(work) = work else {
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        };
        let job = match shared.factory.lock() {
            Ok(mut f) => Arc::new(f.next_job(&work)),
            Err(_) => return,
        };
        let header = bitcoin::consensus::encode::serialize(&job.header(job.version, 0));
        let mut first = [0u8; 64];
        first.copy_from_slice(&header[..64]);
        let ms = midstate(&first);
        let word = |at: usize| {
            u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let tail: TailWords = [word(64), word(68), word(72)];
        let mut n = u64::from(thread);
        while n + u64::from(threads) <= u64::from(u32::MAX) {
            let nonces = [n as u32, (n + u64::from(threads)) as u32];
            // Header nonce bytes are LE; the message word is their big-endian read.
            let states = sha256d_lanes(&ms, &tail, nonces.map(u32::swap_bytes));
            for (lane, state) in states.iter().enumerate() {
                if state_zero_bits(state) >= share_bits {
                    let result = Found {
                        device,
                        device_name: device_name.clone(),
                        chip: None,
                        job: job.clone(),
                        version: job.version,
                        nonce: nonces[lane],
                        threshold: Threshold::zero_bits(share_bits),
                    };
                    if found.blocking_send(result).is_err() {
                        return;
                    }
                }
            }
            n += 2 * u64::from(threads);
            // Check for new work every 64k hashes (a few ms).
            if n & 0xFFFF < 2 * u64::from(threads)
                && (stop.load(Ordering::Relaxed)
                    || shared.generation.load(Ordering::SeqCst) != generation)
            {
                break;
            }
        }
    }
}

/// Keep `Job` in scope for docs.
#[allow(dead_code)]
type _JobRef = Job;
