//! Talking to Bitcoin Core: RPC, start-up checks, tip watching.

pub mod ready;
pub mod rpc;
pub mod socks;
pub mod source;
pub mod zmq;

pub use rpc::{Auth, RpcClient, RpcError};
