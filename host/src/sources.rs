//! Work sources in the configured order: the node, then pools (or pools first). Every device
//! and every Stratum miner mines on the work of one source at a time: the first in the order
//! that is fit. A source that stops being fit is left at once for the next fit one; a source
//! earlier in the order is returned to once it has been fit for a while (so that a flapping
//! pool does not drag the miners back and forth).
//!
//! Fit means: the node has work (a pause shorter than `failover_after`, such as the moment
//! after a block is found, does not count); a pool is connected, authorized, sending work and
//! taking shares (see [`crate::stratum::client::PoolHealth`]).

use std::sync::Arc;
use std::time::Duration;

use bitcoin::BlockHash;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::events::Event;
use crate::stratum::client::PoolHealth;
use crate::work::TemplateWork;

/// One work source, as the selector sees it.
#[derive(Debug)]
pub struct SourceInput {
    /// `node` or the pool's name.
    pub name: String,
    /// Its work.
    pub work: watch::Receiver<Option<Arc<TemplateWork>>>,
    /// A pool's fitness; `None` for the node (fit while it has work).
    pub health: Option<watch::Receiver<PoolHealth>>,
    /// The node's tip (updated even while mining pauses); `None` for pools.
    pub tip: Option<watch::Receiver<Option<BlockHash>>>,
}

/// Failover timing.
#[derive(Debug, Clone, Copy)]
pub struct SourceTiming {
    /// The node without work this long is unfit.
    pub failover_after: Duration,
    /// A source earlier in the order is returned to after being fit this long.
    pub switch_back_after: Duration,
}

/// How long after start an earlier source is taken as soon as it is fit.
const STARTUP_GRACE: Duration = Duration::from_secs(10);

/// Which source to mine on. Pure: `fit_since[i]` is when source `i` last became fit (`None`:
/// unfit now), `active` the one mined on now.
pub fn choose(
    active: Option<usize>,
    fit_since: &[Option<Instant>],
    now: Instant,
    switch_back_after: Duration,
) -> Option<usize> {
    let first_fit = fit_since.iter().position(Option::is_some);
    match active {
        Some(a) if fit_since.get(a).is_some_and(Option::is_some) => {
            // Stay, unless an earlier source has been fit long enough.
            let earlier = fit_since[..a].iter().position(|since| {
                since.is_some_and(|s| now.saturating_duration_since(s) >= switch_back_after)
            });
            Some(earlier.unwrap_or(a))
        }
        // The active source is unfit: the first fit one, at once; none fit, stay.
        _ => first_fit.or(active),
    }
}

/// Forward the chosen source's work to `out` (and its tip to `tip_out`) until cancelled.
pub async fn select(
    mut inputs: Vec<SourceInput>,
    out: watch::Sender<Option<Arc<TemplateWork>>>,
    tip_out: watch::Sender<Option<BlockHash>>,
    timing: SourceTiming,
    events: broadcast::Sender<Event>,
    cancel: CancellationToken,
) {
    if inputs.is_empty() {
        return;
    }
    let mut fit_since: Vec<Option<Instant>> = vec![None; inputs.len()];
    let mut unfit_since: Vec<Option<Instant>> = vec![None; inputs.len()];
    let mut active: Option<usize> = None;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = Instant::now();
        for (i, input) in inputs.iter().enumerate() {
            let has_work = input.work.borrow().is_some();
            let fit = match &input.health {
                Some(health) => has_work && *health.borrow() == PoolHealth::Up,
                None => {
                    if has_work {
                        unfit_since[i] = None;
                    } else if unfit_since[i].is_none() {
                        unfit_since[i] = Some(now);
                    }
                    has_work
                        || unfit_since[i].is_some_and(|s| {
                            now.saturating_duration_since(s) < timing.failover_after
                        })
                }
            };
            fit_since[i] = match (fit, fit_since[i]) {
                (true, Some(s)) => Some(s),
                (true, None) => Some(now),
                (false, _) => None,
            };
        }
        // At start-up the sources come up in whatever order they answer (the node's template
        // usually before a pool's handshake): take the preferred one as soon as it is fit.
        let switch_back_after = if now.saturating_duration_since(started) < STARTUP_GRACE {
            Duration::ZERO
        } else {
            timing.switch_back_after
        };
        let chosen = choose(active, &fit_since, now, switch_back_after);
        if chosen != active
            && let Some(c) = chosen
        {
            let reason = match active {
                None => "first source fit to mine on".to_string(),
                Some(a) if fit_since[a].is_none() => format!("{} is unfit", inputs[a].name),
                Some(a) => format!(
                    "{} is fit again and comes before {}",
                    inputs[c].name, inputs[a].name
                ),
            };
            tracing::info!(source = %inputs[c].name, %reason, "mining on a new work source");
            let _ = events.send(Event::WorkSource {
                source: inputs[c].name.clone(),
                reason,
            });
            active = Some(c);
        }
        if let Some(a) = active {
            let work = inputs[a].work.borrow_and_update().clone();
            out.send_if_modified(|current| {
                let same = match (&*current, &work) {
                    (Some(x), Some(y)) => Arc::ptr_eq(x, y),
                    (None, None) => true,
                    _ => false,
                };
                if !same {
                    *current = work.clone();
                }
                !same
            });
            let tip = match &inputs[a].tip {
                Some(tip) => *tip.borrow(),
                None => work.as_ref().map(|w| w.prev_blockhash()),
            };
            if tip.is_some() {
                tip_out.send_if_modified(|t| {
                    let changed = *t != tip;
                    *t = tip;
                    changed
                });
            }
        }
        // The active source's work goes out the moment it changes; fitness is looked at
        // every tick.
        let active_work = active.map(|a| &mut inputs[a].work);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
            changed = async {
                match active_work {
                    Some(w) => w.changed().await,
                    None => std::future::pending().await,
                }
            } => {
                if changed.is_err() {
                    // That source is gone (shutting down): the ticks take over.
                    tick.tick().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_fit_source_wins_and_earlier_ones_must_prove_themselves() {
        let t0 = Instant::now();
        let back = Duration::from_secs(30);
        let s = |secs: u64| Some(t0 + Duration::from_secs(secs));
        // Start: the first fit source.
        assert_eq!(choose(None, &[s(0), s(0)], t0, back), Some(0));
        assert_eq!(choose(None, &[None, s(0)], t0, back), Some(1));
        // The active one fails: the next fit one at once.
        assert_eq!(choose(Some(0), &[None, s(0)], t0, back), Some(1));
        // The first comes back: not before it has been fit for 30 s.
        let later = t0 + Duration::from_secs(100);
        assert_eq!(choose(Some(1), &[s(80), s(0)], later, back), Some(1));
        assert_eq!(choose(Some(1), &[s(70), s(0)], later, back), Some(0));
        // Nothing fit: stay where we are.
        assert_eq!(choose(Some(1), &[None, None], later, back), Some(1));
        assert_eq!(choose(None, &[None, None], later, back), None);
        // A later source never pulls the miners from an earlier fit one.
        assert_eq!(choose(Some(0), &[s(90), s(0)], later, back), Some(0));
    }
}
