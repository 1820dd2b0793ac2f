//! The pool link: JSON lines over TCP (a loopback or LAN port, or an onion service through
//! SOCKS5). Requests carry an `id` and get one reply with that `id`; the coordinator also sends
//! notifications (no `id`). Docs: docs/pool.md.
//!
//! ```text
//! coordinator → {"method":"hello","params":{"version":1,"network":"signet","challenge":"<32 bytes hex>"}}
//! member      → {"id":1,"method":"login","params":{"member":"<x-only key>","payout":"<script>","signature":"<schnorr>","output_bytes":250}}
//! coordinator → {"id":1,"result":{"name":"alice","difficulty":0.001}}
//! coordinator → {"method":"round","params":{"round":7,"height":120,"rules":{...},"payees":[...]}}
//! coordinator → {"method":"difficulty","params":{"difficulty":0.002}}
//! member      → {"id":2,"method":"share","params":{"round":7,"header":"..","coinbase":"..","branch":[".."]}}
//! coordinator → {"id":2,"result":{"hash":"..","block":false}}      or {"id":2,"error":{"kind":"stale_tip","message":".."}}
//! anyone      → {"id":3,"method":"ledger","params":{"from":0,"max":5000}}
//! coordinator → {"id":3,"result":{"lines":["{\"seq\":0,...}"],"total":12,"last_hash":".."}}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::payout::{Payee, RoundRules};

/// Protocol version in `hello`.
pub const VERSION: u32 = 1;
/// Longest line either side accepts (a share with a block attached: up to 4 MB of block as hex).
pub const MAX_LINE: usize = 9 * 1024 * 1024;
/// Longest line the coordinator takes before a login: a login, or an auditor's `ledger` or
/// `status` request, is a few hundred bytes.
pub const MAX_LINE_BEFORE_LOGIN: usize = 16 * 1024;
/// Most ledger lines one `ledger` reply carries.
pub const LEDGER_PAGE: usize = 5000;
/// Most ledger bytes one `ledger` reply carries (at least one line): well under [`MAX_LINE`]
/// once the lines are escaped as JSON strings. A share's line is about 2 KB, a round's up to
/// about 15 KB.
pub const LEDGER_PAGE_BYTES: usize = 4 * 1024 * 1024;
// A page must fit in a line even if escaping doubled every byte (`"` becomes `\"`).
const _: () = assert!(2 * LEDGER_PAGE_BYTES + 64 * 1024 < MAX_LINE);

/// A request (member or auditor to coordinator).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Reply id.
    pub id: u64,
    /// Method.
    pub method: String,
    /// Parameters.
    #[serde(default)]
    pub params: Value,
}

/// A reply or a notification (coordinator to member).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Message {
    /// Present on replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Present on notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Notification parameters.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
    /// A reply's result.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub result: Value,
    /// A reply's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable reason (for shares: [`super::validate::Reject::kind`]).
    pub kind: String,
    /// What went wrong, for people.
    pub message: String,
}

/// `hello`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version.
    pub version: u32,
    /// The coordinator's network (`signet`, `main`, ...).
    pub network: String,
    /// Fresh per connection; the login signs it.
    pub challenge: String,
}

/// `login` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Login {
    /// The member's x-only key, hex.
    pub member: String,
    /// Its payout script, hex.
    pub payout: String,
    /// BIP340 signature of [`super::identity::auth_message`], hex.
    pub signature: String,
    /// Bytes of payout outputs its miners' coinbase buffers leave room for (none: no limit of
    /// its own).
    #[serde(default)]
    pub output_bytes: Option<u64>,
}

/// `login` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginOk {
    /// The member's name in the coordinator's list.
    pub name: String,
    /// Its starting share difficulty.
    pub difficulty: f64,
}

/// `round` notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Round {
    /// Number.
    pub round: u64,
    /// The coordinator's next block height at its start.
    pub height: u32,
    /// What it was computed with.
    pub rules: RoundRules,
    /// The payout list.
    pub payees: Vec<Payee>,
}

/// `difficulty` notification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Difficulty {
    /// Share difficulty (Stratum's scale: 1 is about 2^32 hashes).
    pub difficulty: f64,
}

/// `share` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Share {
    /// The round its coinbase pays.
    pub round: u64,
    /// Header, hex.
    pub header: String,
    /// Coinbase (legacy serialisation), hex.
    pub coinbase: String,
    /// Merkle branch, hex.
    pub branch: Vec<String>,
    /// The whole block, hex, when the share meets the network target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
}

/// `share` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShareOk {
    /// Its hash.
    pub hash: String,
    /// It is a block.
    pub block: bool,
    /// Its ledger position.
    pub seq: u64,
}

/// `ledger` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerQuery {
    /// First entry.
    pub from: u64,
    /// Most entries (capped at [`LEDGER_PAGE`]).
    pub max: usize,
}

/// `ledger` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerPage {
    /// The lines, as stored.
    pub lines: Vec<String>,
    /// Entries in the ledger now.
    pub total: u64,
}

/// Encode a line.
pub fn line<T: Serialize>(value: &T) -> String {
    let mut text = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    text
}

/// A notification line.
pub fn notification<T: Serialize>(method: &str, params: &T) -> String {
    line(&Message {
        method: Some(method.into()),
        params: serde_json::to_value(params).unwrap_or(Value::Null),
        ..Message::default()
    })
}

/// A reply line.
pub fn reply<T: Serialize>(id: u64, result: &T) -> String {
    line(&Message {
        id: Some(id),
        result: serde_json::to_value(result).unwrap_or(Value::Null),
        ..Message::default()
    })
}

/// An error reply line.
pub fn error(id: u64, kind: &str, message: impl Into<String>) -> String {
    line(&Message {
        id: Some(id),
        error: Some(ErrorBody {
            kind: kind.into(),
            message: message.into(),
        }),
        ..Message::default()
    })
}

/// Read one line of at most `max` bytes; `Ok(None)` at the end of the stream.
///
/// Cancel-safe, so that it can stand in a `select!` beside timers: the part of a line read so
/// far stays in `buf` (the caller's, kept across calls) and the next call goes on from there.
/// A line of a few megabytes (a share with its block) takes seconds over Tor.
pub async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<String>> {
    use tokio::io::AsyncBufReadExt;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed in the middle of a line",
                ))
            };
        }
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        // No await between taking the bytes and keeping them: nothing is lost to a cancel.
        buf.extend_from_slice(&chunk[..take]);
        reader.consume(take);
        if buf.len() > max {
            buf.clear();
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("line longer than {max} bytes"),
            ));
        }
        if done {
            let text = String::from_utf8(std::mem::take(buf)).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "line is not UTF-8")
            })?;
            return Ok(Some(text.trim_end().to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncWriteExt, BufReader};

    #[tokio::test]
    async fn a_line_read_across_a_cancelled_read_is_whole() {
        let (mut far, near) = tokio::io::duplex(64);
        let mut reader = BufReader::new(near);
        let mut buf = Vec::new();
        far.write_all(b"{\"id\":1,\"method\":").await.unwrap();
        // A timer wins the select while the line is half read, as the coordinator's tick does.
        let cancelled = tokio::time::timeout(
            Duration::from_millis(20),
            read_line(&mut reader, &mut buf, 1024),
        )
        .await;
        assert!(cancelled.is_err());
        far.write_all(b"\"status\"}\nnext\n").await.unwrap();
        let line = read_line(&mut reader, &mut buf, 1024).await.unwrap();
        assert_eq!(line.as_deref(), Some("{\"id\":1,\"method\":\"status\"}"));
        let line = read_line(&mut reader, &mut buf, 1024).await.unwrap();
        assert_eq!(line.as_deref(), Some("next"));
        drop(far);
        assert_eq!(read_line(&mut reader, &mut buf, 1024).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_line_over_the_limit_is_refused() {
        let (mut far, near) = tokio::io::duplex(1024);
        let mut reader = BufReader::new(near);
        let mut buf = Vec::new();
        far.write_all(&[b'x'; 200]).await.unwrap();
        let e = read_line(&mut reader, &mut buf, 100).await.unwrap_err();
        assert!(e.to_string().contains("longer than 100 bytes"), "{e}");
    }
}
