//! JSON-RPC client for Bitcoin Core: cookie or user/password auth, timeouts, typed errors, and
//! retries with backoff for the errors that mean "try again" (connection refused, warm-up -28).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// How to authenticate to the node.
#[derive(Clone)]
pub enum Auth {
    /// Read `user:password` from Bitcoin Core's `.cookie` file on every (re)connect: the node
    /// writes a new one each time it starts.
    Cookie(PathBuf),
    /// `rpcuser` / `rpcpassword`.
    UserPass(String, String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Cookie(path) => f.debug_tuple("Cookie").field(path).finish(),
            // Never log the password.
            Auth::UserPass(user, _) => f
                .debug_tuple("UserPass")
                .field(user)
                .field(&"<redacted>")
                .finish(),
        }
    }
}

/// Bitcoin Core RPC error codes we act on (src/rpc/protocol.h).
pub mod code {
    /// Client still warming up (loading block index, verifying blocks).
    pub const IN_WARMUP: i64 = -28;
    /// Still downloading initial blocks.
    pub const CLIENT_IN_INITIAL_DOWNLOAD: i64 = -10;
    /// Method not found.
    pub const METHOD_NOT_FOUND: i64 = -32601;
}

/// What went wrong talking to the node.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The node is not reachable (refused, reset, DNS): it may be down or restarting.
    #[error("node unreachable at {url}: {reason}")]
    Unreachable {
        /// RPC URL.
        url: String,
        /// Transport error.
        reason: String,
    },
    /// No answer within the timeout.
    #[error("node did not answer {method} within {timeout:?}")]
    Timeout {
        /// Method called.
        method: String,
        /// Timeout applied.
        timeout: Duration,
    },
    /// HTTP 401/403.
    #[error(
        "node refused the credentials ({detail}): check rpcuser/rpcpassword or the cookie file"
    )]
    Auth {
        /// Which credentials were used.
        detail: String,
    },
    /// The cookie file could not be read.
    #[error(
        "cannot read the node's cookie file {path}: {reason} (is bitcoind running with this datadir and network?)"
    )]
    Cookie {
        /// Cookie path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The node answered with an RPC error.
    #[error("node returned error {code} for {method}: {message}")]
    Rpc {
        /// Method called.
        method: String,
        /// RPC error code.
        code: i64,
        /// Message.
        message: String,
    },
    /// The answer was not the JSON we expected.
    #[error("malformed reply to {method}: {reason}")]
    Malformed {
        /// Method called.
        method: String,
        /// What was wrong.
        reason: String,
    },
}

impl RpcError {
    /// Worth retrying the same call later: the node is down, busy or warming up.
    pub fn is_transient(&self) -> bool {
        match self {
            RpcError::Unreachable { .. } | RpcError::Timeout { .. } | RpcError::Cookie { .. } => {
                true
            }
            RpcError::Rpc { code, .. } => *code == code::IN_WARMUP,
            RpcError::Auth { .. } | RpcError::Malformed { .. } => false,
        }
    }
}

/// A Bitcoin Core RPC client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RpcClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    url: String,
    auth: Auth,
    http: reqwest::Client,
    timeout: Duration,
    next_id: AtomicU64,
}

impl RpcClient {
    /// A client for `url` (e.g. `http://127.0.0.1:8332`) with a per-call timeout.
    pub fn new(url: impl Into<String>, auth: Auth, timeout: Duration) -> Result<Self, RpcError> {
        let url = url.into();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(4)
            .build()
            .map_err(|e| RpcError::Unreachable {
                url: crate::api::redact_url(&url),
                reason: e.to_string(),
            })?;
        Ok(RpcClient {
            inner: Arc::new(Inner {
                url,
                auth,
                http,
                timeout,
                next_id: AtomicU64::new(1),
            }),
        })
    }

    /// RPC URL.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Default per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    fn credentials(&self) -> Result<(String, String, String), RpcError> {
        match &self.inner.auth {
            Auth::UserPass(user, pass) => Ok((user.clone(), pass.clone(), format!("user {user}"))),
            Auth::Cookie(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| RpcError::Cookie {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                let (user, pass) = text
                    .trim()
                    .split_once(':')
                    .ok_or_else(|| RpcError::Cookie {
                        path: path.clone(),
                        reason: "not in user:password form".into(),
                    })?;
                Ok((
                    user.to_string(),
                    pass.to_string(),
                    format!("cookie {}", path.display()),
                ))
            }
        }
    }

    /// Call `method` with the default timeout.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, RpcError> {
        self.call_with_timeout(method, params, self.inner.timeout)
            .await
    }

    /// Call `method` with a specific timeout (long for GBT longpoll).
    pub async fn call_with_timeout<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<T, RpcError> {
        let value = self.call_raw(method, params, timeout).await?;
        serde_json::from_value(value).map_err(|e| RpcError::Malformed {
            method: method.to_string(),
            reason: e.to_string(),
        })
    }

    /// Call and return the raw `result` value.
    pub async fn call_raw(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, RpcError> {
        let bytes = self.call_bytes(method, params, timeout).await?;
        parse_reply(method, &bytes)
    }

    /// Call and return the whole HTTP body (for large replies parsed elsewhere, e.g. on a
    /// blocking thread).
    pub async fn call_bytes(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        let (user, pass, detail) = self.credentials()?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "1.0", "id": id, "method": method, "params": params});
        let request = self
            .inner
            .http
            .post(&self.inner.url)
            .basic_auth(user, Some(pass))
            .json(&body)
            .timeout(timeout);
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(method, timeout, e))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(RpcError::Auth { detail });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(method, timeout, e))?;
        if bytes.is_empty() {
            return Err(RpcError::Malformed {
                method: method.into(),
                reason: format!("empty body (HTTP {status})"),
            });
        }
        Ok(bytes.to_vec())
    }

    /// The error says the URL without credentials (it reaches logs, the API and webhooks).
    fn transport_error(&self, method: &str, timeout: Duration, e: reqwest::Error) -> RpcError {
        let e = e.without_url();
        if e.is_timeout() {
            RpcError::Timeout {
                method: method.to_string(),
                timeout,
            }
        } else if e.is_decode() || e.is_body() {
            RpcError::Malformed {
                method: method.to_string(),
                reason: e.to_string(),
            }
        } else {
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                reason = format!("{reason}: {s}");
                source = s.source();
            }
            RpcError::Unreachable {
                url: crate::api::redact_url(&self.inner.url),
                reason,
            }
        }
    }

    /// Call, retrying transient errors with exponential backoff (250 ms doubling to 5 s) until
    /// `give_up_after` has passed. `on_retry` sees each transient error (for logging).
    pub async fn call_retrying<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
        give_up_after: Duration,
        mut on_retry: impl FnMut(&RpcError),
    ) -> Result<T, RpcError> {
        let deadline = tokio::time::Instant::now() + give_up_after;
        let mut backoff = Duration::from_millis(250);
        loop {
            match self.call(method, params.clone()).await {
                Err(e) if e.is_transient() && tokio::time::Instant::now() + backoff < deadline => {
                    on_retry(&e);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }
}

/// The `error` member of a JSON-RPC 1.0 reply.
#[derive(serde::Deserialize)]
struct ErrorObject {
    code: i64,
    message: String,
}

impl ErrorObject {
    fn into_error(self, method: &str) -> RpcError {
        RpcError::Rpc {
            method: method.to_string(),
            code: self.code,
            message: self.message,
        }
    }
}

fn malformed(method: &str, body: &[u8], e: serde_json::Error) -> RpcError {
    RpcError::Malformed {
        method: method.to_string(),
        reason: format!(
            "{e} (body starts {:?})",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        ),
    }
}

/// Parse a JSON-RPC 1.0 reply body: `{"result": ..., "error": null | {code, message}}`.
pub fn parse_reply(method: &str, body: &[u8]) -> Result<Value, RpcError> {
    #[derive(serde::Deserialize)]
    struct Reply {
        #[serde(default)]
        result: Value,
        #[serde(default)]
        error: Option<ErrorObject>,
    }
    let reply: Reply = serde_json::from_slice(body).map_err(|e| malformed(method, body, e))?;
    match reply.error {
        Some(err) => Err(err.into_error(method)),
        None => Ok(reply.result),
    }
}

/// Only the error part of a reply: `Err` if the node returned an RPC error, `Ok` otherwise
/// (the result itself is parsed by the caller).
pub fn parse_reply_error_only(method: &str, body: &[u8]) -> Result<(), RpcError> {
    #[derive(serde::Deserialize)]
    struct ErrorOnly {
        #[serde(default)]
        error: Option<ErrorObject>,
    }
    // Skim for the error without building the whole result (it may be megabytes).
    match serde_json::from_slice::<ErrorOnly>(body) {
        Ok(ErrorOnly { error: Some(err) }) => Err(err.into_error(method)),
        Ok(_) => Ok(()),
        Err(e) => Err(malformed(method, body, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_and_errors_parse() {
        assert_eq!(
            parse_reply("x", br#"{"result":5,"error":null,"id":1}"#).unwrap(),
            json!(5)
        );
        let err = parse_reply(
            "getblocktemplate",
            br#"{"result":null,"error":{"code":-28,"message":"Loading block index..."},"id":1}"#,
        )
        .unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("-28"));
        let err = parse_reply("getblocktemplate", br#"{"result": {"version": 5"#).unwrap_err();
        assert!(matches!(err, RpcError::Malformed { .. }), "{err}");
        assert!(!err.is_transient());
    }

    #[test]
    fn passwords_are_not_in_debug_output() {
        let auth = Auth::UserPass("alice".into(), "hunter2".into());
        assert!(!format!("{auth:?}").contains("hunter2"));
    }
}
