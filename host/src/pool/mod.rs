//! A pool of home miners in which every member builds its own blocks from its own node
//! (docs/pool.md). The coordinator keeps a hash-chained share ledger and announces each round's
//! payout list; members pay that list in their own coinbases and send shares over the pool link
//! (loopback, LAN or a Tor onion service); anyone can audit the ledger.
//!
//! Pure and consensus-adjacent: [`payout`] (the accounting), [`validate`] (a share's check),
//! [`ledger`] (the chain of entries), [`audit`]. With I/O: [`coordinator`], [`member`].

pub mod audit;
pub mod cli;
pub mod coordinator;
pub mod identity;
pub mod ledger;
pub mod member;
pub mod payout;
pub mod protocol;
pub mod validate;
