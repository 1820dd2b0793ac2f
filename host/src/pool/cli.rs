//! `hearth pool audit` and `hearth pool key`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::io::{AsyncWriteExt, BufReader};

use super::audit::{AuditReport, Auditor};
use super::protocol::{self, Message};

/// `hearth pool audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// The coordinator's pool port: `host:port`, or `<name>.onion:port` with --socks5.
    #[arg(long, required_unless_present = "ledger")]
    pub coordinator: Option<String>,
    /// SOCKS5 proxy to reach it (Tor: 127.0.0.1:9050).
    #[arg(long)]
    pub socks5: Option<String>,
    /// Audit a ledger file instead (a copy saved with --save, or the coordinator's own).
    #[arg(long, conflicts_with = "coordinator")]
    pub ledger: Option<PathBuf>,
    /// Keep a copy of the fetched ledger here.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `hearth pool key`.
#[derive(Debug, clap::Args)]
pub struct KeyArgs {
    /// The member's configuration (its `[pool.member] key_file`, or the default beside the journal).
    #[arg(long, default_value = "hearth.toml")]
    pub config: PathBuf,
}

/// Print this member's public key (making the key on first use).
pub fn key(args: KeyArgs) -> anyhow::Result<()> {
    let config = crate::config::Config::load(&args.config)?;
    let path = config
        .pool
        .member
        .as_ref()
        .and_then(|m| m.key_file.clone())
        .unwrap_or_else(|| config.journal.dir.join("pool-member.key"));
    let key = super::identity::MemberKey::load_or_create(&path)?;
    println!("{}", key.id());
    eprintln!(
        "(the key is in {}; give the coordinator the line above for its pool.coordinator.members)",
        path.display()
    );
    Ok(())
}

/// Run the audit; exit status 0 only when every check passes.
pub async fn audit(args: AuditArgs) -> anyhow::Result<bool> {
    let started = Instant::now();
    let mut auditor = Auditor::default();
    let mut saved = match &args.save {
        Some(path) => Some(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => None,
    };
    let source = if let Some(path) = &args.ledger {
        let text =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        use std::io::BufRead;
        for line in std::io::BufReader::new(text).lines() {
            let line = line.with_context(|| format!("cannot read {}", path.display()))?;
            if !line.is_empty() {
                auditor.line(&line);
            }
        }
        path.display().to_string()
    } else {
        let coordinator = args.coordinator.clone().unwrap_or_default();
        fetch(&coordinator, args.socks5.as_deref(), |line| {
            if let Some(f) = saved.as_mut() {
                use std::io::Write;
                let _ = writeln!(f, "{line}");
            }
            auditor.line(line);
        })
        .await?;
        coordinator
    };
    let report = auditor.finish();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&source, &report, started.elapsed());
    }
    Ok(report.passed())
}

fn print_report(source: &str, r: &AuditReport, took: Duration) {
    println!(
        "pool ledger from {source}: {} entries ({} members, {} rounds, {} shares, {} blocks) in {:.2} s",
        r.entries,
        r.members,
        r.rounds,
        r.shares,
        r.blocks,
        took.as_secs_f64()
    );
    println!("  last entry hash {}", r.last_hash);
    let line = |ok: bool, what: &str| println!("{} {what}", if ok { "PASS" } else { "FAIL" });
    let has = |word: &str| r.failures.iter().any(|f| f.contains(word));
    line(r.chain_broken_at.is_none(), "hash chain unbroken");
    line(
        !has("target") && !has("credited twice") && !has("marked"),
        "every share's proof of work",
    );
    line(
        !has("merkle") && !has("commit"),
        "merkle roots and member commitments",
    );
    line(
        !has("announced payout list"),
        "every round's list recomputed from the ledger",
    );
    line(
        !has("coinbase does not pay"),
        "every coinbase (and every block's) pays its round's list",
    );
    for failure in &r.failures {
        println!("  - {failure}");
    }
    if r.passed() {
        println!("audit passed");
    } else {
        println!("audit FAILED: {} problem(s)", r.failures.len());
    }
}

/// Fetch every ledger line from a coordinator, in order.
pub async fn fetch(
    coordinator: &str,
    socks5: Option<&str>,
    mut each: impl FnMut(&str),
) -> anyhow::Result<u64> {
    let (host, port) = coordinator
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .with_context(|| format!("--coordinator {coordinator:?}: give host:port"))?;
    if host.ends_with(".onion") && socks5.is_none() {
        anyhow::bail!(
            "{coordinator} is an onion address: add --socks5 127.0.0.1:9050 (Tor's SOCKS port)"
        );
    }
    let stream = crate::node::socks::connect(&host, port, socks5, Duration::from_secs(120))
        .await
        .map_err(|e| anyhow::anyhow!("the coordinator at {coordinator}: {e}"))?;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut buf = Vec::new();
    let mut from = 0u64;
    let mut id = 1u64;
    loop {
        let request = json!({"id": id, "method": "ledger", "params": {"from": from, "max": protocol::LEDGER_PAGE}});
        write.write_all(protocol::line(&request).as_bytes()).await?;
        let page = loop {
            let line = tokio::time::timeout(
                Duration::from_secs(120),
                protocol::read_line(&mut reader, &mut buf, protocol::MAX_LINE),
            )
            .await
            .context("the coordinator did not answer within 120 s")??
            .context("the coordinator closed the connection")?;
            let message: Message = serde_json::from_str(&line).context("not a pool message")?;
            if message.id != Some(id) {
                continue; // hello and other notifications
            }
            if let Some(e) = message.error {
                anyhow::bail!("the coordinator refused the ledger: {}", e.message);
            }
            let page: protocol::LedgerPage =
                serde_json::from_value(message.result).context("ledger page")?;
            break page;
        };
        id += 1;
        for line in &page.lines {
            each(line);
        }
        from += page.lines.len() as u64;
        if page.lines.is_empty() || from >= page.total {
            return Ok(from);
        }
    }
}
