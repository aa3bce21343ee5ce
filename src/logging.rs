//! Logging through `tracing`, to wherever the process's stderr leads. Under the journal
//! (`JOURNAL_STREAM` names stderr's device and inode, as systemd sets it for a unit) events
//! go to journald's native socket with real priorities and their fields as journal fields
//! (`TARGET_NAME`, `INSTALLATION_ID`, `GENERATION`, `EXPIRES_AT`, …), so that
//! `journalctl -p warning` and `journalctl TARGET_NAME=agent-1` work; when that socket is
//! unavailable, stderr lines carry sd-daemon `<N>` priority prefixes instead. Elsewhere: plain
//! stderr lines with a timestamp. `RUST_LOG` sets the level (default info).
//!
//! No secret may be a field or in a message: fields end up in the journal, readable by the
//! user (and by anyone in the `systemd-journal` group).

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The name the journal shows (`SYSLOG_IDENTIFIER`), whatever the binary's file is called.
pub const SYSLOG_IDENTIFIER: &str = "github-token-refresher";

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    // a second init (tests) keeps the first subscriber, hence the ignored results
    if !stderr_is_journal() {
        use std::io::IsTerminal;
        let _ = registry
            .with(fmt.with_ansi(std::io::stderr().is_terminal()))
            .try_init();
        return;
    }
    match journald_layer() {
        Ok(journal) => {
            let _ = registry.with(journal).try_init();
        }
        Err(_) => {
            let _ = registry
                .with(
                    fmt.with_ansi(false).without_time().event_format(SdPrefixed(
                        tracing_subscriber::fmt::format()
                            .without_time()
                            .with_target(false),
                    )),
                )
                .try_init();
        }
    }
}

fn journald_layer() -> std::io::Result<tracing_journald::Layer> {
    Ok(tracing_journald::layer()?
        // our field names become journal fields as they are: target_name → TARGET_NAME
        .with_field_prefix(None)
        .with_syslog_identifier(SYSLOG_IDENTIFIER.into())
        .with_priority_mappings(priorities()))
}

/// tracing's levels as syslog priorities, the way sd-daemon(3) and journalctl read them.
fn priorities() -> tracing_journald::PriorityMappings {
    use tracing_journald::Priority;
    tracing_journald::PriorityMappings {
        error: Priority::Error,
        warn: Priority::Warning,
        info: Priority::Informational,
        debug: Priority::Debug,
        trace: Priority::Debug,
    }
}

/// The sd-daemon(3) priority of a level: `<3>` error, `<4>` warning, `<6>` info, `<7>` debug.
pub fn sd_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Whether stderr is the journal stream systemd connected (systemd.exec(5), `JOURNAL_STREAM`:
/// "device:inode" of that stream). An inherited variable with stderr redirected elsewhere —
/// `run 2>log` from a shell inside a unit — does not count.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(parse_journal_stream) else {
        return false;
    };
    stderr_dev_ino().is_some_and(|actual| actual == (dev, ino))
}

/// `"8:12345"` → `(8, 12345)`.
pub fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

fn stderr_dev_ino() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Formats an event as the inner format does, behind its sd-daemon priority prefix.
struct SdPrefixed<F>(F);

impl<S, N, F> FormatEvent<S, N> for SdPrefixed<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", sd_priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_values() {
        assert_eq!(parse_journal_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("8:12345\n"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("8"), None);
        assert_eq!(parse_journal_stream("x:1"), None);
        assert_eq!(parse_journal_stream(""), None);
    }

    #[test]
    fn priorities_match_sd_daemon() {
        assert_eq!(sd_priority(&Level::ERROR), 3);
        assert_eq!(sd_priority(&Level::WARN), 4);
        assert_eq!(sd_priority(&Level::INFO), 6);
        assert_eq!(sd_priority(&Level::DEBUG), 7);
    }
}
