//! Logging to stderr through `tracing`. Under systemd (`JOURNAL_STREAM` set) without colours
//! or timestamps, since the journal adds its own. `RUST_LOG` sets the level (default info).

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = if journal {
        builder.with_ansi(false).without_time().try_init()
    } else {
        use std::io::IsTerminal;
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
    // a second init (tests) keeps the first subscriber
    let _ = result;
}
