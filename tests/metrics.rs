//! The metrics file (`--metrics-file`, `metrics_file`), read back the way Prometheus would:
//! every version of it is parsed by the reference Python client's parser
//! (`tests/metrics/parse.py`; `GTR_PYTHON` names a python with `prometheus_client`, default
//! `target/prom-venv/bin/python`, then `python3`).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use rustix::process::Signal;
use serde_json::Value;

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("GTR_PYTHON").filter(|p| !p.is_empty()) {
        return p.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/prom-venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

/// Whether the reference parser (Python's `prometheus_client`) can run here. Without it the
/// parsing tests are skipped with a message on a developer's machine, and fail under CI
/// (`CI` set), where `.ci/run` installs it: a green CI always means the parser read the file.
fn parser_ready() -> bool {
    let ok = Command::new(python())
        .args(["-c", "import prometheus_client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let hint = "prometheus_client is not installed: python3 -m venv target/prom-venv && \
                    target/prom-venv/bin/pip install prometheus_client (or set GTR_PYTHON)";
        assert!(std::env::var_os("CI").is_none(), "{hint}");
        eprintln!("SKIPPED: {hint}");
    }
    ok
}

/// The file's samples as the Prometheus parser sees them; panics when it does not parse.
fn parse(path: &Path) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/metrics/parse.py");
    let o = Command::new(python())
        .arg(script)
        .arg(path)
        .output()
        .expect("python runs");
    assert!(
        o.status.success(),
        "the Prometheus parser refused '{}' (exit {:?}): {}\n{}",
        path.display(),
        o.status.code(),
        String::from_utf8_lossy(&o.stderr),
        fs::read_to_string(path).unwrap_or_default()
    );
    serde_json::from_slice::<Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The value of sample `name` with these labels.
fn value(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s["name"] == name
                && labels
                    .iter()
                    .all(|(k, v)| s["labels"][*k].as_str() == Some(*v))
        })
        .and_then(|s| s["value"].as_f64())
}

fn family_type(samples: &[Value], name: &str) -> String {
    samples
        .iter()
        .find(|s| s["name"] == name)
        .map(|s| s["type"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

#[test]
fn the_metrics_file_parses_and_follows_mints_and_failures() {
    if !parser_ready() {
        return;
    }
    let env = TestEnv::new();
    let prom = env.dir.path().join("gtr.prom");
    let (_n, d) = daemon_ready(
        &env,
        &[
            &schedule("2s", "1s")[..],
            &["--metrics-file", prom.to_str().unwrap()],
        ]
        .concat(),
    );
    let t = [("target", "default")];
    wait_until("the metrics file", Duration::from_secs(5), || prom.exists());
    let s = parse(&prom);
    let file = env.read_file();
    assert_eq!(
        value(
            &s,
            "github_token_refresher_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "github_token_refresher_token_expiry_timestamp_seconds",
            &t
        ),
        Some(file.expires_at_unix as f64)
    );
    assert_eq!(
        value(&s, "github_token_refresher_token_generation", &t),
        Some(file.generation as f64)
    );
    assert_eq!(
        family_type(&s, "github_token_refresher_refreshes_total"),
        "counter"
    );
    assert_eq!(
        value(&s, "github_token_refresher_consecutive_failures", &t),
        Some(0.0)
    );
    let now = chrono::Utc::now().timestamp() as f64;
    let last = value(
        &s,
        "github_token_refresher_last_success_timestamp_seconds",
        &t,
    )
    .unwrap();
    assert!((now - last).abs() < 10.0, "{last} vs {now}");
    assert_eq!(
        value(&s, "github_token_refresher_clock_offset_seconds", &t),
        Some(0.0)
    );
    // GitHub fails: the failures show, and the file stays parseable throughout
    env.fake.push_fault(Fault::new(
        Route::AccessTokens,
        FaultKind::status(503, "{}"),
        3,
    ));
    wait_until("two consecutive failures", Duration::from_secs(30), || {
        value(
            &parse(&prom),
            "github_token_refresher_consecutive_failures",
            &t,
        )
        .is_some_and(|v| v >= 2.0)
    });
    let s = parse(&prom);
    assert!(
        value(
            &s,
            "github_token_refresher_refreshes_total",
            &[("target", "default"), ("result", "failure")]
        )
        .unwrap()
            >= 2.0
    );
    // and recover
    wait_until(
        "a success after the failures",
        Duration::from_secs(40),
        || {
            value(
                &parse(&prom),
                "github_token_refresher_consecutive_failures",
                &t,
            ) == Some(0.0)
        },
    );
    let s = parse(&prom);
    assert_eq!(
        value(&s, "github_token_refresher_token_generation", &t),
        Some(env.read_file().generation as f64)
    );
    assert!(
        value(
            &s,
            "github_token_refresher_refreshes_total",
            &[("target", "default"), ("result", "success")]
        )
        .unwrap()
            >= 2.0
    );
    let mode = fs::metadata(&prom).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o644
    );
    let names: Vec<_> = fs::read_dir(env.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("gtr.prom"))
        .collect();
    assert_eq!(names, ["gtr.prom"], "no temp files left");
    let text = fs::read_to_string(&prom).unwrap();
    assert_no_secrets(&text, &env.secrets());
    let (code, log) = d.stop(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn metrics_file_from_the_configuration_file_covers_every_target_and_follows_a_reload() {
    if !parser_ready() {
        return;
    }
    let env = TestEnv::new();
    let prom = env.dir.path().join("gtr.prom");
    let write = |names: &[&str]| {
        let mut rest = format!("metrics_file = \"{}\"\n", prom.display());
        for name in names {
            rest += &format!(
                "[[target]]\nname = \"{name}\"\ninstallation_id = 100\noutput = \"{}\"\n",
                env.dir.path().join(name).join("token.json").display()
            );
        }
        write_targets_toml(&env, &rest)
    };
    let config = write(&["a", "b"]);
    let (_n, d, _) = daemon_config_ready(&env, &config);
    let has = |name: &str| {
        value(
            &parse(&prom),
            "github_token_refresher_token_generation",
            &[("target", name)],
        )
        .is_some()
    };
    wait_until(
        "both targets in the metrics",
        Duration::from_secs(5),
        || prom.exists() && has("a") && has("b"),
    );
    write(&["a", "c"]);
    d.signal(Signal::HUP);
    wait_until("the reload in the metrics", Duration::from_secs(10), || {
        has("c") && !has("b")
    });
    let (code, log) = d.stop(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn a_metrics_file_in_a_missing_directory_is_a_configuration_error() {
    let env = TestEnv::new();
    let mut c = env.cmd("run");
    c.args(["--installation-id", "100", "--metrics-file"])
        .arg(env.dir.path().join("nope/gtr.prom"));
    let o = run(c);
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));
    assert!(text(&o).contains("does not exist"), "{}", text(&o));
    assert_eq!(env.fake.mint_count(), 0);
}
