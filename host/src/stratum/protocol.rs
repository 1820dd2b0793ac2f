//! Stratum V1 on the wire: newline-delimited JSON-RPC. Requests are parsed leniently (ids of any
//! JSON type, numbers as numbers or strings), replies are written the way every client parses
//! them. Pure: no I/O here.

use serde_json::{Value, json};

/// A request from a miner.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Echoed in the reply as it came (number, string or null).
    pub id: Value,
    /// `mining.subscribe`, `mining.submit`, ...
    pub method: String,
    /// Always an array here (a missing `params` is an empty one).
    pub params: Vec<Value>,
}

/// Why a line is not a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but no `method` string (a reply to something we never asked, or garbage).
    #[error("no method")]
    NoMethod,
    /// `params` is neither an array nor absent.
    #[error("params must be an array")]
    BadParams,
}

/// Parse one line (without its newline).
pub fn parse_request(line: &str) -> Result<Request, LineError> {
    let value: Value =
        serde_json::from_str(line.trim()).map_err(|e| LineError::NotJson(e.to_string()))?;
    let Value::Object(mut object) = value else {
        return Err(LineError::NoMethod);
    };
    let id = object.remove("id").unwrap_or(Value::Null);
    let method = match object.remove("method") {
        Some(Value::String(m)) => m,
        _ => return Err(LineError::NoMethod),
    };
    let params = match object.remove("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a,
        // A lone object (some clients' `mining.configure` extension parameters) counts as one
        // parameter.
        Some(other @ Value::Object(_)) => vec![other],
        Some(_) => return Err(LineError::BadParams),
    };
    Ok(Request { id, method, params })
}

/// A successful reply line.
pub fn reply(id: &Value, result: Value) -> String {
    let mut line = json!({ "id": id, "result": result, "error": null }).to_string();
    line.push('\n');
    line
}

/// An error reply line: `[code, message, null]`, as cgminer and ckpool format them.
pub fn error_reply(id: &Value, error: StratumError) -> String {
    let (code, message) = error.code_and_message();
    let mut line = json!({ "id": id, "result": null, "error": [code, message, null] }).to_string();
    line.push('\n');
    line
}

/// A notification line (a request with a null id).
pub fn notification(method: &str, params: Value) -> String {
    let mut line = json!({ "id": null, "method": method, "params": params }).to_string();
    line.push('\n');
    line
}

/// Why a request was refused. Codes are the de-facto Stratum V1 ones (slush's draft, as
/// cgminer, ckpool and public-pool answer): 20 other, 21 job not found (stale), 22 duplicate,
/// 23 low difficulty, 24 unauthorised worker, 25 not subscribed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StratumError {
    /// 21: the job id was never sent, or is too old.
    JobNotFound,
    /// 21: the job builds on a replaced tip.
    Stale,
    /// 22: sent before.
    Duplicate,
    /// 23: the hash does not meet the share target.
    LowDifficulty,
    /// 24: submit before authorize.
    Unauthorized,
    /// 25: submit before subscribe.
    NotSubscribed,
    /// 20: anything else, with the reason.
    Other(String),
}

impl StratumError {
    /// Code and message for the reply.
    pub fn code_and_message(&self) -> (i32, String) {
        match self {
            StratumError::JobNotFound => (21, "Job not found".into()),
            StratumError::Stale => (21, "Stale share: the job's tip was replaced".into()),
            StratumError::Duplicate => (22, "Duplicate share".into()),
            StratumError::LowDifficulty => (23, "Low difficulty share".into()),
            StratumError::Unauthorized => (24, "Unauthorized worker".into()),
            StratumError::NotSubscribed => (25, "Not subscribed".into()),
            StratumError::Other(reason) => (20, reason.clone()),
        }
    }
}

/// A `mining.submit`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    /// Worker name as the miner sent it.
    pub worker: String,
    /// Job id.
    pub job_id: String,
    /// Extranonce2 bytes, as long as the miner sent them (checked against the session's size
    /// by the caller).
    pub extranonce2: Vec<u8>,
    /// Header time.
    pub ntime: u32,
    /// Header nonce.
    pub nonce: u32,
    /// BIP310 version bits (sixth parameter), when sent.
    pub version_bits: Option<u32>,
}

/// A hex string of 1 to 8 digits as a u32 (big-endian, as every client writes ntime, nonce and
/// version bits).
fn hex_u32(value: &Value, what: &str) -> Result<u32, StratumError> {
    let text = value
        .as_str()
        .ok_or_else(|| StratumError::Other(format!("{what} must be a hex string")))?;
    if text.is_empty() || text.len() > 8 {
        return Err(StratumError::Other(format!(
            "{what} must be 1 to 8 hex digits"
        )));
    }
    u32::from_str_radix(text, 16).map_err(|_| StratumError::Other(format!("{what} is not hex")))
}

/// Parse `mining.submit` params: `[worker, job_id, extranonce2, ntime, nonce]` and optionally
/// the version bits.
pub fn parse_submit(params: &[Value]) -> Result<Submit, StratumError> {
    if !(5..=6).contains(&params.len()) {
        return Err(StratumError::Other(format!(
            "mining.submit takes 5 or 6 params, got {}",
            params.len()
        )));
    }
    let text = |i: usize, what: &str| {
        params[i]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| StratumError::Other(format!("{what} must be a string")))
    };
    let extranonce2 = text(2, "extranonce2")?;
    if extranonce2.len() > 64 {
        return Err(StratumError::Other("extranonce2 is too long".into()));
    }
    let extranonce2 = hex::decode(&extranonce2)
        .map_err(|_| StratumError::Other("extranonce2 is not hex".into()))?;
    Ok(Submit {
        worker: text(0, "worker")?,
        job_id: text(1, "job id")?,
        extranonce2,
        ntime: hex_u32(&params[3], "ntime")?,
        nonce: hex_u32(&params[4], "nonce")?,
        version_bits: match params.get(5) {
            Some(v) => Some(hex_u32(v, "version bits")?),
            None => None,
        },
    })
}

/// A difficulty given as a JSON number or a numeric string (`mining.suggest_difficulty`, a
/// `d=` password).
pub fn difficulty_value(value: &Value) -> Option<f64> {
    let d = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (d.is_finite() && d > 0.0).then_some(d)
}

/// What a `mining.configure` asks for (BIP310).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Configure {
    /// The extensions named, in order.
    pub extensions: Vec<String>,
    /// `version-rolling.mask`, when version rolling is asked for (all bits when the mask is
    /// missing or unreadable).
    pub version_rolling_mask: Option<u32>,
}

/// Parse `mining.configure` params: `[[extension, ...], {extension parameters}]`. Lenient on
/// what miners get wrong: a mask without its hex digits' leading zeros or with `0x`, and a
/// `version-rolling.min-bit-count` of any type (Braiins OS sends it in forms the BIP does not
/// define); the minimum bit count is advisory, so it is not needed at all.
pub fn parse_configure(params: &[Value]) -> Configure {
    let extensions: Vec<String> = params
        .first()
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let options = params.get(1).and_then(Value::as_object);
    let version_rolling_mask = extensions.iter().any(|e| e == "version-rolling").then(|| {
        options
            .and_then(|o| o.get("version-rolling.mask"))
            .and_then(|m| match m {
                Value::String(s) => u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok(),
                Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
                _ => None,
            })
            .unwrap_or(u32::MAX)
    });
    Configure {
        extensions,
        version_rolling_mask,
    }
}

/// The `mining.configure` result: version rolling granted with `mask` when asked for, and
/// `false` for every other extension asked for (BIP310: unsupported extensions answer false).
pub fn configure_result(configure: &Configure, granted_mask: Option<u32>) -> Value {
    let mut result = serde_json::Map::new();
    for extension in &configure.extensions {
        if extension == "version-rolling" {
            if let Some(mask) = granted_mask {
                result.insert("version-rolling".into(), Value::Bool(true));
                result.insert(
                    "version-rolling.mask".into(),
                    Value::String(format!("{mask:08x}")),
                );
            } else {
                result.insert("version-rolling".into(), Value::Bool(false));
            }
        } else {
            result.insert(extension.clone(), Value::Bool(false));
        }
    }
    Value::Object(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_whatever_the_id_type() {
        let r = parse_request(r#"{"id": 1, "method": "mining.subscribe", "params": []}"#).unwrap();
        assert_eq!(r.id, json!(1));
        assert_eq!(r.method, "mining.subscribe");
        let r =
            parse_request(r#"{"id":"a7","method":"mining.authorize","params":["w","x"]}"#).unwrap();
        assert_eq!(r.id, json!("a7"));
        assert_eq!(r.params.len(), 2);
        let r = parse_request(r#"{"method":"mining.extranonce.subscribe"}"#).unwrap();
        assert_eq!(r.id, Value::Null);
        assert!(r.params.is_empty());
        assert!(matches!(
            parse_request("{\"id\":1,"),
            Err(LineError::NotJson(_))
        ));
        assert_eq!(parse_request("[1,2]"), Err(LineError::NoMethod));
        assert_eq!(
            parse_request(r#"{"id":1,"result":true,"error":null}"#),
            Err(LineError::NoMethod)
        );
        assert_eq!(
            parse_request(r#"{"id":1,"method":"x","params":3}"#),
            Err(LineError::BadParams)
        );
    }

    #[test]
    fn submits_take_five_or_six_params() {
        // The Bitaxe vector's submission (docs/bm13xx-vectors.md §5.3).
        let params: Vec<Value> = serde_json::from_str(
            r#"["bc1q.w1", "875b4b7", "17000000", "685468d7", "7552034c", "00b44000"]"#,
        )
        .unwrap();
        let s = parse_submit(&params).unwrap();
        assert_eq!(s.job_id, "875b4b7");
        assert_eq!(s.extranonce2, [0x17, 0, 0, 0]);
        assert_eq!(s.ntime, 0x6854_68d7);
        assert_eq!(s.nonce, 0x7552_034c);
        assert_eq!(s.version_bits, Some(0x00b4_4000));
        assert_eq!(parse_submit(&params[..5]).unwrap().version_bits, None);
        assert!(parse_submit(&params[..4]).is_err());
        let mut bad = params.clone();
        bad[4] = json!("xyz");
        assert!(parse_submit(&bad).is_err());
        bad[4] = json!(1234);
        assert!(parse_submit(&bad).is_err());
        bad[4] = json!("123456789");
        assert!(parse_submit(&bad).is_err());
    }

    #[test]
    fn configure_tolerates_malformed_min_bit_count() {
        let params: Vec<Value> = serde_json::from_str(
            r#"[["version-rolling"], {"version-rolling.mask": "ffffffff", "version-rolling.min-bit-count": "2"}]"#,
        )
        .unwrap();
        let c = parse_configure(&params);
        assert_eq!(c.version_rolling_mask, Some(0xffff_ffff));
        let params: Vec<Value> = serde_json::from_str(
            r#"[["version-rolling", "minimum-difficulty"], {"version-rolling.mask": "1fffe000", "version-rolling.min-bit-count": 16, "minimum-difficulty.value": 2048}]"#,
        )
        .unwrap();
        let c = parse_configure(&params);
        assert_eq!(c.version_rolling_mask, Some(0x1fff_e000));
        assert_eq!(
            configure_result(&c, Some(0x1fff_e000)),
            json!({"version-rolling": true, "version-rolling.mask": "1fffe000", "minimum-difficulty": false})
        );
        assert_eq!(
            parse_configure(&[json!(["subscribe-extranonce"])]).version_rolling_mask,
            None
        );
    }

    #[test]
    fn replies_are_single_lines() {
        assert_eq!(
            reply(&json!(3), json!(true)),
            "{\"error\":null,\"id\":3,\"result\":true}\n"
        );
        assert_eq!(
            error_reply(&json!("x"), StratumError::Duplicate),
            "{\"error\":[22,\"Duplicate share\",null],\"id\":\"x\",\"result\":null}\n"
        );
        assert_eq!(difficulty_value(&json!(0.0015)), Some(0.0015));
        assert_eq!(difficulty_value(&json!("512")), Some(512.0));
        assert_eq!(difficulty_value(&json!(0)), None);
    }
}
