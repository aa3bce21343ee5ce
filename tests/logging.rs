//! Where log lines go and with which priority, as the real binary decides it from
//! `JOURNAL_STREAM`: stderr that is the journal stream but without journald's native socket
//! gets sd-daemon `<N>` prefixes (so `journalctl -p warning` still works); an inherited
//! `JOURNAL_STREAM` naming another file does not count. The native protocol itself is
//! proven on a real systemd by tests/e2e/journal.sh.

mod common;

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;

use common::*;

/// journald's native socket: where it exists, the binary (rightly) logs there instead.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Run `cmd` with stderr into a file; `journal_stream(dev, ino)` gives JOURNAL_STREAM for that
/// file. Returns the exit code and stderr.
fn run_with_stderr_file(
    dir: &Path,
    mut cmd: std::process::Command,
    journal_stream: impl Fn(u64, u64) -> String,
) -> (Option<i32>, String) {
    let path = dir.join("stderr.log");
    let file = File::create(&path).unwrap();
    let meta = file.metadata().unwrap();
    cmd.env("JOURNAL_STREAM", journal_stream(meta.dev(), meta.ino()))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(file);
    let status = cmd.status().expect("binary runs");
    (status.code(), std::fs::read_to_string(&path).unwrap())
}

#[test]
fn stderr_as_the_journal_stream_gets_sd_daemon_priorities() {
    if Path::new(JOURNAL_SOCKET).exists() {
        eprintln!("skipped: {JOURNAL_SOCKET} exists, so the binary logs to the journal itself");
        return;
    }
    let env = TestEnv::new();
    // a 503 once: `once` warns, retries and succeeds
    env.fake.push_fault(Fault::once(
        Route::AccessTokens,
        FaultKind::status(503, r#"{"message":"Service Unavailable"}"#),
    ));
    let mut once = env.cmd("once");
    once.args(["--installation-id", "100"]);
    let (code, err) = run_with_stderr_file(env.dir.path(), once, |dev, ino| format!("{dev}:{ino}"));
    assert_eq!(code, Some(0), "{err}");
    let warning = err
        .lines()
        .find(|l| l.contains("503"))
        .unwrap_or_else(|| panic!("no 503 line: {err}"));
    assert!(warning.starts_with("<4>"), "{warning}");
    for line in err.lines().filter(|l| !l.is_empty()) {
        let rest = line
            .strip_prefix('<')
            .and_then(|l| l.split_once('>'))
            .filter(|(n, _)| n.len() == 1 && n.as_bytes()[0].is_ascii_digit())
            .map(|(_, rest)| rest)
            .unwrap_or_else(|| panic!("a line without its priority: {line:?}"));
        // the journal stamps lines itself: no time of day
        assert!(!rest.starts_with(|c: char| c.is_ascii_digit()), "{line:?}");
    }
    assert_no_secrets(&err, &env.secrets());

    // a configuration error at priority 3
    let (code, err) = run_with_stderr_file(env.dir.path(), bare_cmd_with("run"), |dev, ino| {
        format!("{dev}:{ino}")
    });
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("<3>") && l.contains("--app-id is missing")),
        "{err}"
    );
}

#[test]
fn a_journal_stream_naming_another_file_is_ignored() {
    let env = TestEnv::new();
    // the journal's stream was inherited, but stderr now goes to a file: a plain log
    let (code, err) = run_with_stderr_file(env.dir.path(), bare_cmd_with("run"), |dev, ino| {
        format!("{dev}:{}", ino + 1)
    });
    assert_eq!(code, Some(78), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("--app-id is missing"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(!line.starts_with('<'), "{line}");
    assert!(line.contains(" ERROR "), "{line}");
    // with the time of day, as on a terminal
    assert!(
        line.chars().take(4).all(|c| c.is_ascii_digit()),
        "no timestamp: {line}"
    );
}

fn bare_cmd_with(sub: &str) -> std::process::Command {
    let mut c = bare_cmd();
    c.arg(sub).env_remove("XDG_RUNTIME_DIR");
    c
}
