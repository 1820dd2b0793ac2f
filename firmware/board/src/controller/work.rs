//! Work: the queue of host work items, the job cadence to the chips, the chips' version-rolling
//! mask and hash clock (pause), the chain's answers to a power-up, and nonce verification (each
//! nonce re-hashed against the job it names).

use bm13xx::job::FullHeaderJob;
use bm13xx::model::{JobFormat, NonceReply};
use bm13xx::register::addr;
use bm13xx::response::RegisterReply;
use bm13xx::sequence::address_interval;
use bm13xx::verify::NonceVerdict;
use hearth_link::{BoardToHost, Fault, LogLevel, NonceReport, WorkItem};

use super::{Action, Actions, Controller, HashClock, Out, Power, format, text};

/// Work items the board queues.
pub const QUEUE_DEPTH: usize = 16;
/// Below this many queued items the board asks for more.
pub const QUEUE_LOW: usize = 4;
/// While the queue stays low, the board asks for work again this often (the host may have had
/// none the first time).
pub const WORK_LOW_REPEAT_MS: u32 = 2000;
/// After a failed power-up the board tries again this much later.
const POWER_UP_RETRY_MS: u32 = 10_000;

impl Controller {
    pub(super) fn add_work(&mut self, now_ms: u32, item: WorkItem, out: &mut Out) {
        if self.queue.is_full() {
            self.queue.pop_front();
        }
        let _ = self.queue.push_back(item);
        // Work arriving is the host answering: the rest of its burst is on the way, so the
        // repeat timer restarts rather than asking again while it lands.
        self.asked_for_work_ms = Some(now_ms);
        if self.send_next_now {
            self.send_next_job(now_ms, out);
        }
    }

    pub(super) fn clear_work(&mut self) {
        self.queue.clear();
        // The next item is for a new block: straight to the chips.
        self.send_next_now = true;
    }

    /// The host's clock request, within the model's envelope. While the board is throttled a
    /// raise is held: it becomes the clock the board returns to once it has cooled.
    pub(super) fn host_frequency(&mut self, khz: u32, out: &mut Out) {
        let khz = khz.clamp(
            self.config.min_frequency_khz,
            self.config
                .max_frequency_khz
                .max(self.config.min_frequency_khz),
        );
        self.config.frequency_khz = khz;
        if self.throttled() && khz > self.frequency_khz {
            out.log(
                LogLevel::Info,
                format(format_args!(
                    "throttled: {khz} kHz held until the board cools"
                )),
            );
            return;
        }
        if self.power == Power::Up && khz != self.frequency_khz {
            out.push(Action::SetFrequency {
                from_khz: self.frequency_khz,
                to_khz: khz,
            });
        }
        self.frequency_khz = khz;
    }

    pub(super) fn send_next_job(&mut self, now_ms: u32, out: &mut Out) {
        if self.power != Power::Up || self.safe.is_some() || self.paused {
            return;
        }
        if self.hash_clock != HashClock::On {
            // Jobs wait for the clock: none is lost on chips that are not hashing.
            self.sync_hash_clock(out);
            return;
        }
        let Some(item) = self.queue.pop_front() else {
            return;
        };
        // Full-header chips roll the bits of their 0xA4 register, chip-wide: keep it equal to
        // this job's mask (it shrinks when the template sets bits inside BIP320's), or they
        // roll, and so clear, the template's bits and no nonce verifies. Midstate chips roll
        // nothing themselves.
        if self.config.model.job_format() == JobFormat::FullHeader
            && self.chip_version_mask != Some(item.version_mask)
        {
            out.push(Action::SetVersionMask(item.version_mask));
            self.chip_version_mask = Some(item.version_mask);
        }
        let job = FullHeaderJob {
            job_id: 0,
            starting_nonce: 0,
            nbits: item.nbits,
            ntime: item.ntime,
            merkle_root: item.merkle_root,
            prev_block_hash: item.prev_block_hash,
            version: item.version,
        };
        let job = self.jobs.add_job_with(job, item.version_mask, item.id);
        out.push(Action::SendJob(job));
        self.last_job_ms = now_ms;
        self.send_next_now = false;
        self.ask_for_work_if_low(now_ms, out);
    }

    /// Ask the host for work when the queue is low: at once the first time, then whenever it has
    /// stayed low for [`WORK_LOW_REPEAT_MS`] since the last ask or the last work item.
    pub(super) fn ask_for_work_if_low(&mut self, now_ms: u32, out: &mut Out) {
        if self.power != Power::Up || self.safe.is_some() || self.queue.len() >= QUEUE_LOW {
            return;
        }
        if self
            .asked_for_work_ms
            .is_some_and(|at| now_ms.wrapping_sub(at) < WORK_LOW_REPEAT_MS)
        {
            return;
        }
        self.asked_for_work_ms = Some(now_ms);
        out.send(BoardToHost::WorkLow {
            queued: self.queue.len() as u8,
            wanted: QUEUE_DEPTH as u8,
        });
    }

    /// Issue whatever hash-clock command brings the chips to what the host wants: off while
    /// paused, on otherwise. Nothing while a command is on its way or the core is not up (a
    /// power-up brings the clock up; [`Controller::on_chain_up`] stops it again if paused).
    pub(super) fn sync_hash_clock(&mut self, out: &mut Out) {
        if self.power != Power::Up || self.safe.is_some() {
            return;
        }
        match (self.paused, self.hash_clock) {
            (true, HashClock::On | HashClock::Starting) => {
                out.push(Action::StopHashing);
                self.hash_clock = HashClock::Stopping;
            }
            (false, HashClock::Off | HashClock::Stopping) => {
                out.push(Action::ResumeHashing);
                self.hash_clock = HashClock::Starting;
            }
            _ => {}
        }
    }

    /// The chain switched the hash clock off for power-up `generation` (the write went out):
    /// from now on a paused board reports itself [`hearth_link::BoardState::Idle`].
    pub fn on_hashing_stopped(&mut self, _now_ms: u32, generation: u32) -> Actions {
        if generation == self.generation
            && self.power == Power::Up
            && self.hash_clock == HashClock::Stopping
        {
            self.hash_clock = HashClock::Off;
        }
        self.finish(Out::default())
    }

    /// The chain ramped the hash clock back up for power-up `generation`: jobs flow again.
    pub fn on_hashing_resumed(&mut self, now_ms: u32, generation: u32) -> Actions {
        let mut out = Out::default();
        if generation == self.generation
            && self.power == Power::Up
            && self.hash_clock == HashClock::Starting
        {
            self.hash_clock = HashClock::On;
            self.send_next_job(now_ms, &mut out);
        }
        self.finish(out)
    }

    /// A job, mask or clock command did not fit the chain's queue: what the chips have is in
    /// doubt. The next job writes its mask again, and a clock command on its way is issued
    /// again at the next tick.
    pub fn on_chain_command_dropped(&mut self) {
        self.chip_version_mask = None;
        self.hash_clock = match self.hash_clock {
            HashClock::Stopping => HashClock::On,
            HashClock::Starting => HashClock::Off,
            settled => settled,
        };
    }

    /// Job cadence, the hash clock, and asking for work.
    pub(super) fn work_tick(&mut self, now_ms: u32, out: &mut Out) {
        self.sync_hash_clock(out);
        if self.power == Power::Up
            && (self.send_next_now
                || now_ms.wrapping_sub(self.last_job_ms) >= self.config.job_interval_ms)
        {
            self.send_next_job(now_ms, out);
        }
        if !self.paused {
            self.ask_for_work_if_low(now_ms, out);
        }
    }

    /// Power-up `generation` finished: the chain is initialised and hashing can start. An
    /// answer to an abandoned power-up (a fault came in between) is ignored; the firmware has
    /// already been told to power down.
    pub fn on_chain_up(&mut self, now_ms: u32, generation: u32) -> Actions {
        let mut out = Out::default();
        if generation == self.generation && self.power == Power::Starting {
            self.power = Power::Up;
            self.up_since = Some(now_ms);
            // Bring-up leaves the clock running; the first job writes its own mask.
            self.hash_clock = HashClock::On;
            self.chip_version_mask = None;
            self.jobs.clear();
            self.send_next_now = true;
            self.asked_for_work_ms = None;
            out.log(LogLevel::Info, text("chain up, hashing"));
            out.send(BoardToHost::Hello(self.capabilities()));
            // What changed while the chain came up (a host request, a throttle step) is applied
            // now: until here it only updated the controller's state.
            let (powered_mv, powered_khz) = self.powered_with;
            if self.core_mv != powered_mv {
                out.push(Action::SetCoreVoltage(self.core_mv));
            }
            if self.frequency_khz != powered_khz && !self.paused {
                out.push(Action::SetFrequency {
                    from_khz: powered_khz,
                    to_khz: self.frequency_khz,
                });
            }
            // Paused before this power-up: the chips stop at once.
            self.sync_hash_clock(&mut out);
            self.send_next_job(now_ms, &mut out);
            self.ask_for_work_if_low(now_ms, &mut out);
        }
        self.finish(out)
    }

    /// Power-up `generation` failed, or the chain it brought up was lost: power down, report,
    /// and try again in 10 s. Stale reports are ignored as in [`Controller::on_chain_up`].
    pub fn on_chain_failed(&mut self, now_ms: u32, generation: u32, reason: &str) -> Actions {
        let mut out = Out::default();
        if generation == self.generation && self.power != Power::Off {
            out.push(Action::PowerDown);
            out.send(BoardToHost::Fault(Fault::ChainInit {
                reason: text(reason),
            }));
            self.power = Power::Off;
            self.up_since = None;
            self.jobs.clear();
            self.retry_power_at = Some(now_ms.wrapping_add(POWER_UP_RETRY_MS));
        }
        self.finish(out)
    }

    /// A nonce from the chips: look up its job, re-hash, report it if it is real.
    pub fn on_nonce(&mut self, _now_ms: u32, reply: &NonceReply) -> Actions {
        let mut out = Out::default();
        self.nonce(reply, &mut out);
        self.finish(out)
    }

    fn nonce(&mut self, reply: &NonceReply, out: &mut Out) {
        let chip = usize::from(reply.chip_index(self.config.model, self.config.chips));
        self.jobs.set_min_zero_bits(self.share_bits());
        let checked = match self.jobs.check(reply) {
            NonceVerdict::Valid(checked) => checked,
            NonceVerdict::HardwareError(_) => {
                if let Some(c) = self.counters.get_mut(chip) {
                    c.errors = c.errors.saturating_add(1);
                }
                return;
            }
            NonceVerdict::UnknownJob | NonceVerdict::Duplicate(_) => return,
        };
        let Some(&work_id) = self.jobs.payload(reply.job_id) else {
            return;
        };
        if let Some(c) = self.counters.get_mut(chip) {
            c.nonces = c.nonces.saturating_add(1);
        }
        out.send(BoardToHost::Nonce(NonceReport {
            work_id,
            version: checked.version,
            nonce: reply.nonce,
            chip: chip as u8,
            zero_bits: checked.zero_bits.min(255) as u8,
        }));
    }

    /// A register reply from the chips: the hash and error counters they are polled for.
    pub fn on_register(&mut self, reply: &RegisterReply) {
        let chip = usize::from(u16::from(reply.chip_address) / address_interval(self.config.chips));
        let Some(c) = self.counters.get_mut(chip) else {
            return;
        };
        match reply.register {
            addr::HASH_COUNTER_TOTAL => c.hash_counter = reply.value,
            addr::ERROR_COUNTER => c.error_counter = reply.value,
            _ => {}
        }
    }
}
