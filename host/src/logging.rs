//! Logging: `tracing`, filtered by `HEARTH_LOG` (then `RUST_LOG`), default `info`.
//!
//! Three outputs: human-readable lines on stderr (a terminal), JSON lines on stderr (log
//! shippers), and journald (under systemd, so that `journalctl -p warning` and field matches
//! work). `auto` picks journald only when systemd connected our stderr to the journal: a
//! `hearth` started by hand from a shell inside a service's environment still prints lines.
//!
//! Whatever the output, warnings and errors also go to a small in-memory tail ([`Tail`]) that
//! the dashboard's log shows next to the daemon's events: a slow node, a refused share or a
//! bad frame is seen in the browser, not only in the journal.

use std::collections::VecDeque;
use std::fmt;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::api::status::{LogLine, unix_now};

/// `--log-format` (`HEARTH_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// journald when systemd connected stderr to the journal, else human.
    #[default]
    Auto,
    /// Lines for people, on stderr.
    Human,
    /// One JSON object per line, on stderr.
    Json,
    /// Native journald entries (priority from the level, fields as journal fields).
    Journald,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Auto => "auto",
            LogFormat::Human => "human",
            LogFormat::Json => "json",
            LogFormat::Journald => "journald",
        })
    }
}

/// The logging options, added to every subcommand by `main` (global).
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log output: human (lines), json (one object per line), journald (native entries), or
    /// auto: journald when systemd connects stderr to the journal, else human.
    #[arg(
        long,
        global = true,
        env = "HEARTH_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Auto
    )]
    pub log_format: LogFormat,
}

/// Where the events actually go, once `auto` has been decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Human-readable lines on stderr.
    Human,
    /// JSON lines on stderr.
    Json,
    /// The journal's native socket.
    Journald,
}

/// Decide the output. `journal_stream` is `$JOURNAL_STREAM` ("<device>:<inode>" of the stream
/// systemd connected to the journal) and `stderr` the device and inode of our fd 2. systemd
/// passes the variable down to children, whose stderr may well be something else (a pipe, a
/// terminal), so the variable alone does not prove the journal reads our stderr.
pub fn select(
    format: LogFormat,
    journal_stream: Option<&str>,
    stderr: Option<(u64, u64)>,
) -> Output {
    match format {
        LogFormat::Human => Output::Human,
        LogFormat::Json => Output::Json,
        LogFormat::Journald => Output::Journald,
        LogFormat::Auto => {
            let connected = journal_stream
                .and_then(parse_journal_stream)
                .is_some_and(|stream| Some(stream) == stderr);
            if connected {
                Output::Journald
            } else {
                Output::Human
            }
        }
    }
}

/// `"<device>:<inode>"`, both decimal, as systemd.exec(5) documents `JOURNAL_STREAM`.
fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// Device and inode of stderr (fstat on a duplicate of fd 2; no unsafe code needed).
#[cfg(unix)]
fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn stderr_identity() -> Option<(u64, u64)> {
    None
}

/// Install the global subscriber. `verbose` raises the default level to debug; `quiet` lowers it
/// to warnings (the demo prints its own lines).
pub fn init(format: LogFormat, verbose: bool, quiet: bool) {
    let default = if verbose {
        "hearth=debug,bm13xx=debug,info"
    } else if quiet {
        "warn"
    } else {
        "info"
    };
    let filter = || {
        std::env::var("HEARTH_LOG")
            .or_else(|_| std::env::var("RUST_LOG"))
            .ok()
            .and_then(|f| EnvFilter::try_new(f).ok())
            .unwrap_or_else(|| EnvFilter::new(default))
    };
    let journal_stream = std::env::var("JOURNAL_STREAM").ok();
    let output = select(format, journal_stream.as_deref(), stderr_identity());
    let tail = || TailLayer(Tail::global());
    match output {
        Output::Human => human(filter(), tail()),
        Output::Json => {
            let _ = tracing_subscriber::registry()
                .with(filter())
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .with_writer(std::io::stderr),
                )
                .with(tail())
                .try_init();
        }
        Output::Journald => {
            if let Err(e) = journald(filter(), tail()) {
                // Logs must go somewhere: a missing journal socket (a container, a chroot)
                // should not stop the daemon.
                human(filter(), tail());
                tracing::warn!(
                    "cannot open the journald socket ({e}); logging human-readable lines to stderr"
                );
            }
        }
    }
}

fn human(filter: EnvFilter, tail: TailLayer) {
    use std::io::IsTerminal;
    // Colours only on a terminal: not in a file, a pipe or the journal (the journald fallback).
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .with(tail)
        .try_init();
}

#[cfg(unix)]
fn journald(filter: EnvFilter, tail: TailLayer) -> std::io::Result<()> {
    // SYSLOG_IDENTIFIER "hearth" whatever the binary was invoked as, and fields without the
    // default "F" prefix: `journalctl -u hearth DEVICE=board0`.
    let layer = tracing_journald::layer()?
        .with_syslog_identifier("hearth".into())
        .with_field_prefix(None);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .with(tail)
        .try_init();
    Ok(())
}

#[cfg(not(unix))]
fn journald(_filter: EnvFilter, _tail: TailLayer) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "journald exists only on Linux",
    ))
}

/// How many warnings the tail keeps from before the dashboard's log starts following it (the
/// configuration's and the start-up checks' warnings come before the daemon runs).
pub const TAIL_LINES: usize = 50;

/// The last warnings and errors logged, and a feed of the new ones.
#[derive(Debug)]
pub struct Tail {
    state: Mutex<TailState>,
}

#[derive(Debug)]
struct TailState {
    recent: VecDeque<LogLine>,
    feed: broadcast::Sender<LogLine>,
}

impl Tail {
    /// An empty tail (tests; the daemon uses [`Tail::global`]).
    pub fn new() -> Tail {
        Tail {
            state: Mutex::new(TailState {
                recent: VecDeque::with_capacity(TAIL_LINES),
                feed: broadcast::channel(256).0,
            }),
        }
    }

    /// The process's tail, which [`init`] feeds. Empty unless `init` ran (tests that start a
    /// daemon in process install their own subscriber).
    pub fn global() -> &'static Tail {
        static GLOBAL: OnceLock<Tail> = OnceLock::new();
        GLOBAL.get_or_init(Tail::new)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TailState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The lines kept so far, oldest first, and every line after them: taken under one lock,
    /// so none is missed or seen twice.
    pub fn follow(&self) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        let state = self.lock();
        (
            state.recent.iter().cloned().collect(),
            state.feed.subscribe(),
        )
    }

    fn push(&self, line: LogLine) {
        let mut state = self.lock();
        if state.recent.len() == TAIL_LINES {
            state.recent.pop_front();
        }
        state.recent.push_back(line.clone());
        // No follower yet is fine: the line is in `recent`.
        let _ = state.feed.send(line);
    }
}

impl Default for Tail {
    fn default() -> Tail {
        Tail::new()
    }
}

/// Feeds warnings and errors (after the filter) to a [`Tail`].
#[derive(Debug)]
pub struct TailLayer(pub &'static Tail);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TailLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let level = *event.metadata().level();
        // Levels order by verbosity: everything above WARN is info, debug or trace.
        if level > tracing::Level::WARN {
            return;
        }
        let mut text = TailText::default();
        event.record(&mut text);
        let message = if text.fields.is_empty() {
            text.message
        } else {
            format!("{} ({})", text.message, text.fields)
        };
        self.0.push(LogLine {
            time: unix_now(),
            level: if level == tracing::Level::ERROR {
                "error"
            } else {
                "warn"
            },
            message,
        });
    }
}

/// An event's message, then its fields as `name=value`, comma-separated.
#[derive(Default)]
struct TailText {
    message: String,
    fields: String,
}

impl Visit for TailText {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
            return;
        }
        if !self.fields.is_empty() {
            self.fields.push_str(", ");
        }
        let _ = write!(self.fields, "{}={value:?}", field.name());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_warnings_and_errors_with_their_fields() {
        let tail: &'static Tail = Box::leak(Box::new(Tail::new()));
        let subscriber = tracing_subscriber::registry().with(TailLayer(tail));
        let (_, mut feed) = tail.follow();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("not kept");
            tracing::warn!(hash = %"00ab", height = 5, "the node gave no verdict");
            tracing::error!(error = "boom", "a bad frame");
            tracing::debug!("not kept either");
        });
        let (recent, _) = tail.follow();
        let shown: Vec<(&str, &str)> = recent
            .iter()
            .map(|l| (l.level, l.message.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("warn", "the node gave no verdict (hash=00ab, height=5)"),
                ("error", "a bad frame (error=boom)")
            ]
        );
        // A follower from before sees both, in order.
        assert_eq!(feed.try_recv().map(|l| l.level), Ok("warn"));
        assert_eq!(feed.try_recv().map(|l| l.level), Ok("error"));
    }

    #[test]
    fn the_tail_is_bounded() {
        let tail: &'static Tail = Box::leak(Box::new(Tail::new()));
        let subscriber = tracing_subscriber::registry().with(TailLayer(tail));
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..TAIL_LINES + 7 {
                tracing::warn!("line {i}");
            }
        });
        let (recent, _) = tail.follow();
        assert_eq!(recent.len(), TAIL_LINES);
        assert_eq!(recent[0].message, "line 7");
    }

    const STDERR: Option<(u64, u64)> = Some((8, 123456));

    #[test]
    fn explicit_formats_win() {
        for stream in [None, Some("8:123456"), Some("garbage")] {
            assert_eq!(select(LogFormat::Human, stream, STDERR), Output::Human);
            assert_eq!(select(LogFormat::Json, stream, STDERR), Output::Json);
            assert_eq!(
                select(LogFormat::Journald, stream, STDERR),
                Output::Journald
            );
        }
    }

    #[test]
    fn auto_is_journald_only_when_stderr_is_the_journal_stream() {
        assert_eq!(
            select(LogFormat::Auto, Some("8:123456"), STDERR),
            Output::Journald
        );
        assert_eq!(
            select(LogFormat::Auto, Some("8:123456\n"), STDERR),
            Output::Journald
        );
        // Not under systemd.
        assert_eq!(select(LogFormat::Auto, None, STDERR), Output::Human);
        // Inherited from a service, but stderr was redirected (another inode, another device).
        assert_eq!(
            select(LogFormat::Auto, Some("8:999"), STDERR),
            Output::Human
        );
        assert_eq!(
            select(LogFormat::Auto, Some("9:123456"), STDERR),
            Output::Human
        );
        // stderr closed or not inspectable.
        assert_eq!(
            select(LogFormat::Auto, Some("8:123456"), None),
            Output::Human
        );
        // Malformed values.
        for bad in ["", "8", "8:", ":123456", "x:y", "8:123456:1", "-8:123456"] {
            assert_eq!(
                select(LogFormat::Auto, Some(bad), STDERR),
                Output::Human,
                "{bad:?}"
            );
        }
    }
}
