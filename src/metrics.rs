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

/// The whole file.
pub fn render(targets: &[TargetMetrics]) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        if samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {PREFIX}_{name} {help}");
        let _ = writeln!(out, "# TYPE {PREFIX}_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{PREFIX}_{name}{{{labels}}} {value}");
        }
    };
    let per = |f: &dyn Fn(&TargetMetrics) -> Option<String>| -> Vec<(String, String)> {
        targets
            .iter()
            .filter_map(|t| f(t).map(|v| (format!("target=\"{}\"", label(&t.name)), v)))
            .collect()
    };
    family(
        "build_info",
        "gauge",
        "The running daemon's version (always 1).",
        vec![(
            format!("version=\"{}\"", label(env!("CARGO_PKG_VERSION"))),
            "1".into(),
        )],
    );
    family(
        "token_expiry_timestamp_seconds",
        "gauge",
        "When the target's current token expires, Unix time by GitHub's clock.",
        per(&|t| t.expires_at_unix.map(|v| v.to_string())),
    );
    family(
        "last_success_timestamp_seconds",
        "gauge",
        "When the target last published a new token, Unix time.",
        per(&|t| t.last_success_unix.map(|v| v.to_string())),
    );
    family(
        "consecutive_failures",
        "gauge",
        "Failed refreshes since the target's last success.",
        per(&|t| Some(t.consecutive_failures.to_string())),
    );
    let mut refreshes = Vec::new();
    for t in targets {
        for (result, n) in [("success", t.successes), ("failure", t.failures)] {
            refreshes.push((
                format!("target=\"{}\",result=\"{result}\"", label(&t.name)),
                n.to_string(),
            ));
        }
    }
    family(
        "refreshes_total",
        "counter",
        "Refresh attempts of this daemon by result.",
        refreshes,
    );
    family(
        "token_generation",
        "gauge",
        "The generation of the target's token file (grows by one per write).",
        per(&|t| Some(t.generation.to_string())),
    );
    family(
        "clock_offset_seconds",
        "gauge",
        "GitHub's clock minus this host's, learned from GitHub's Date header.",
        per(&|t| Some(t.clock_offset_secs.to_string())),
    );
    out
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
