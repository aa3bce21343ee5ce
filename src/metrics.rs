//! Metrics without a port: the Prometheus text format, written atomically to
//! `--metrics-file` (for node_exporter's textfile collector) whenever something in it
//! changes. Rendering is pure; the daemon hands in one [`TargetMetrics`] per target.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::token_file::{self, FileOptions};

/// What the file says about one target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetMetrics {
    pub name: String,
    /// Unix time the current token expires (GitHub's clock); `None`: no token yet.
    pub expires_at_unix: Option<i64>,
    pub last_success_unix: Option<i64>,
    pub consecutive_failures: u32,
    pub successes: u64,
    pub failures: u64,
    /// The token file's generation (0: nothing written yet).
    pub generation: u64,
    /// GitHub's clock minus ours, seconds.
    pub clock_offset_secs: i64,
}

const PREFIX: &str = "github_token_refresher";

/// `\`, `"` and newlines escaped, as label values need.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole file: the families in a fixed order, each left out while it has no sample.
pub fn render(targets: &[TargetMetrics]) -> String {
    let mut out = String::new();
    build_info(&mut out);
    per_target(
        &mut out,
        targets,
        "token_expiry_timestamp_seconds",
        "When the target's current token expires, Unix time by GitHub's clock.",
        |t| t.expires_at_unix,
    );
    per_target(
        &mut out,
        targets,
        "last_success_timestamp_seconds",
        "When the target last published a new token, Unix time.",
        |t| t.last_success_unix,
    );
    per_target(
        &mut out,
        targets,
        "consecutive_failures",
        "Failed refreshes since the target's last success.",
        |t| Some(t.consecutive_failures),
    );
    refreshes_total(&mut out, targets);
    per_target(
        &mut out,
        targets,
        "token_generation",
        "The generation of the target's token file (grows by one per write).",
        |t| Some(t.generation),
    );
    per_target(
        &mut out,
        targets,
        "clock_offset_seconds",
        "GitHub's clock minus this host's, learned from GitHub's Date header.",
        |t| Some(t.clock_offset_secs),
    );
    out
}

/// One family: HELP, TYPE and its samples (`labels`, value); nothing at all without samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, String)]) {
    if samples.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {PREFIX}_{name} {help}");
    let _ = writeln!(out, "# TYPE {PREFIX}_{name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{PREFIX}_{name}{{{labels}}} {value}");
    }
}

/// A gauge with one sample per target that has a value (`None`: not known yet).
fn per_target<V: std::fmt::Display>(
    out: &mut String,
    targets: &[TargetMetrics],
    name: &str,
    help: &str,
    value: impl Fn(&TargetMetrics) -> Option<V>,
) {
    let samples: Vec<_> = targets
        .iter()
        .filter_map(|t| value(t).map(|v| (format!("target=\"{}\"", label(&t.name)), v.to_string())))
        .collect();
    family(out, name, "gauge", help, &samples);
}

/// The running daemon's version, as a label on a constant 1.
fn build_info(out: &mut String) {
    let version = format!("version=\"{}\"", label(env!("CARGO_PKG_VERSION")));
    family(
        out,
        "build_info",
        "gauge",
        "The running daemon's version (always 1).",
        &[(version, "1".into())],
    );
}

/// The refresh counter: two samples per target, by result.
fn refreshes_total(out: &mut String, targets: &[TargetMetrics]) {
    let mut samples = Vec::new();
    for t in targets {
        for (result, n) in [("success", t.successes), ("failure", t.failures)] {
            samples.push((
                format!("target=\"{}\",result=\"{result}\"", label(&t.name)),
                n.to_string(),
            ));
        }
    }
    family(
        out,
        "refreshes_total",
        "counter",
        "Refresh attempts of this daemon by result.",
        &samples,
    );
}

/// Writes the file when its contents change; a failure is reported once per new message.
#[derive(Debug)]
pub struct Writer {
    pub path: PathBuf,
    last: Option<String>,
    last_error: Option<String>,
}

impl Writer {
    pub fn new(path: PathBuf) -> Writer {
        Writer {
            path,
            last: None,
            last_error: None,
        }
    }

    /// Write `text` unless the file already holds it.
    pub fn update(&mut self, text: String) {
        if self.last.as_deref() == Some(text.as_str()) {
            return;
        }
        match write(&self.path, &text) {
            Ok(()) => {
                if self.last_error.take().is_some() {
                    tracing::info!("metrics file '{}' written again", self.path.display());
                }
                self.last = Some(text);
            }
            Err(e) => {
                let msg = e.to_string();
                if self.last_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(
                        "cannot write the metrics file '{}': {msg}",
                        self.path.display()
                    );
                    self.last_error = Some(msg);
                }
            }
        }
    }
}

/// At start: the file's directory must exist (the collector's directory is made by whoever
/// runs the collector; a typo should not go unnoticed until someone misses the metrics).
pub fn check_path(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if path.file_name().is_none() || path.is_dir() {
        return Err(format!(
            "--metrics-file '{}': name a file, e.g. /var/lib/node_exporter/textfile/github-token-refresher.prom",
            path.display()
        ));
    }
    if !dir.is_dir() {
        return Err(format!(
            "--metrics-file '{}': directory '{}' does not exist; create it or point at the \
             textfile collector's directory",
            path.display(),
            dir.display()
        ));
    }
    Ok(())
}

/// Atomically, world-readable (it holds no secret, and the collector may run as another
/// user). The temp file starts with `.`, which the textfile collector ignores.
fn write(path: &Path, text: &str) -> Result<(), token_file::WriteError> {
    token_file::write_atomic(
        path,
        text.as_bytes(),
        FileOptions {
            mode: 0o644,
            gid: None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_and_leaves_out_what_is_not_known_yet() {
        let text = render(&[
            TargetMetrics {
                name: "a".into(),
                expires_at_unix: Some(1_800_003_600),
                last_success_unix: Some(1_800_000_000),
                successes: 3,
                generation: 3,
                clock_offset_secs: -2,
                ..Default::default()
            },
            TargetMetrics {
                name: "b\"x".into(),
                consecutive_failures: 2,
                failures: 2,
                ..Default::default()
            },
        ]);
        assert!(text.contains("github_token_refresher_build_info{version=\""));
        assert!(text.contains(
            "github_token_refresher_token_expiry_timestamp_seconds{target=\"a\"} 1800003600\n"
        ));
        assert!(!text.contains("token_expiry_timestamp_seconds{target=\"b"));
        assert!(text.contains(
            "github_token_refresher_refreshes_total{target=\"b\\\"x\",result=\"failure\"} 2\n"
        ));
        // the text format names a counter's family with its _total, as its samples
        assert!(text.contains("# TYPE github_token_refresher_refreshes_total counter\n"));
        assert!(text.contains("github_token_refresher_clock_offset_seconds{target=\"a\"} -2\n"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn the_writer_writes_only_changes_and_survives_a_bad_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gtr.prom");
        let mut w = Writer::new(path.clone());
        w.update("a 1\n".into());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 1\n");
        std::fs::remove_file(&path).unwrap();
        w.update("a 1\n".into());
        assert!(!path.exists(), "unchanged: not written again");
        let mut bad = Writer::new(dir.path().join("missing/gtr.prom"));
        bad.update("a 1\n".into());
        assert!(bad.last_error.is_some());
    }
}
