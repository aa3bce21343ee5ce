//! The command line as a new user meets it, with the real binary: an incomplete
//! configuration is reported whole in one run; `status` takes `--file` like the consumer
//! commands; single-target errors never show the internal target name; the times a user reads
//! never make a planned refresh look overdue.

mod common;

use std::time::Duration;

use common::*;

/// The problems of a configuration with six mistakes, each on its own line.
const SIX_MISTAKES: &[(&str, &str)] = &[
    ("--app-id", "12a"),
    ("--permissions", "contents=rw"),
    ("--jitter", "soon"),
];
const EXPECTED: &[&str] = &[
    "--app-id '12a'",
    "--private-key-file is missing",
    "no installation given",
    "--permissions: level 'rw'",
    "--output is not set",
    "--jitter 'soon'",
];

fn six_mistakes(sub: &str) -> std::process::Command {
    let mut c = bare_cmd();
    c.arg(sub).env_remove("XDG_RUNTIME_DIR");
    for (flag, value) in SIX_MISTAKES {
        c.args([flag, value]);
    }
    c
}

#[test]
fn check_reports_every_missing_or_wrong_setting_in_one_run() {
    let out = run(six_mistakes("check"));
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let fails: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("FAIL  configuration: "))
        .collect();
    assert_eq!(fails.len(), EXPECTED.len(), "{stdout}");
    for (line, want) in fails.iter().zip(EXPECTED) {
        assert!(
            line.starts_with(&format!("FAIL  configuration: {want}")),
            "{want}: {line}"
        );
    }
    assert!(stdout.contains("hint: see `github-token-refresher check --help`"));
    assert!(!stdout.contains("all checks passed"));
}

#[test]
fn once_and_run_report_every_problem_too_one_line_each() {
    for sub in ["once", "run"] {
        let out = run(six_mistakes(sub));
        assert_eq!(out.status.code(), Some(78), "{sub}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        for want in EXPECTED {
            let hits = stderr.lines().filter(|l| l.contains(want)).count();
            assert_eq!(hits, 1, "{sub}: {want} once in:\n{stderr}");
        }
    }
}

#[test]
fn one_mistake_is_still_one_line() {
    let env = TestEnv::new();
    let mut c = env.cmd("once");
    c.args(["--installation-id", "100", "--jitter", "soon"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("github-token-refresher: --jitter 'soon'"));
}

#[test]
fn status_reads_file_like_the_consumer_commands_and_output_like_run() {
    let env = TestEnv::new();
    let out = env.once(&["--installation-id", "100"]);
    assert!(out.status.success(), "{}", text(&out));
    let status = |args: &[&str], vars: &[(&str, &std::path::Path)]| {
        let mut c = bare_cmd();
        c.arg("status").args(args).env_remove("XDG_RUNTIME_DIR");
        for (k, v) in vars {
            c.env(k, v);
        }
        run(c)
    };
    let path = env.output.to_str().unwrap();
    for (how, out) in [
        ("--file", status(&["--file", path], &[])),
        ("--output", status(&["--output", path], &[])),
        (
            "GITHUB_TOKEN_FILE",
            status(&[], &[("GITHUB_TOKEN_FILE", &env.output)]),
        ),
    ] {
        assert_eq!(out.status.code(), Some(0), "{how}: {}", text(&out));
        assert!(text(&out).starts_with("valid: "), "{how}: {}", text(&out));
    }
    let help = text(&status(&["--help"], &[]));
    assert!(
        help.contains("--file <PATH>") && help.contains("--output"),
        "{help}"
    );

    // nothing says which file: the message names the flag and the variable
    let out = status(&[], &[]);
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--file") && err.contains("GITHUB_TOKEN_FILE"),
        "{err}"
    );
}

#[test]
fn single_target_errors_do_not_show_the_internal_target_name() {
    let env = TestEnv::new();
    // an installation GitHub does not know: a GitHub error, named after no target
    let out = env.once(&["--installation-id", "999"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("404"), "{err}");
    assert!(!err.contains("default"), "{err}");
    let out = run(six_mistakes("once"));
    assert!(!text(&out).contains("default:"), "{}", text(&out));
}

/// `HH:MM:SS UTC` somewhere in `s`, after `after`.
fn has_clock_time_with_seconds(s: &str, after: &str) -> bool {
    let Some(rest) = s.split_once(after).map(|(_, r)| r) else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() >= 12
        && b[..8].iter().enumerate().all(|(i, c)| {
            if i == 2 || i == 5 {
                *c == b':'
            } else {
                c.is_ascii_digit()
            }
        })
        && &rest[8..12] == " UTC"
}

#[test]
fn times_a_user_reads_have_seconds_and_the_next_refresh_is_in_the_future() {
    let env = TestEnv::new();
    let mut n = Notify::new(env.dir.path());
    let d = daemon(
        &env,
        &n,
        &[
            "--installation-id",
            "100",
            "--refresh-interval",
            "40m",
            "--jitter",
            "1s",
        ],
    );
    let ready = n.wait_for("READY=1", Duration::from_secs(20), |l| l == "READY=1");
    let status = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("{ready}"));
    assert!(
        has_clock_time_with_seconds(status, "token valid until ")
            && has_clock_time_with_seconds(status, "next refresh "),
        "{status}"
    );
    d.wait_log("the ready: line", Duration::from_secs(10), |l| {
        l.contains("ready: token valid until")
    });
    assert!(
        has_clock_time_with_seconds(&d.log(), "next refresh "),
        "{}",
        d.log()
    );

    // status: absolute and relative, and the refresh is ahead of now
    let mut c = bare_cmd();
    c.arg("status").arg("--file").arg(&env.output);
    let out = run(c);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let rel = said
        .split_once("next refresh planned ")
        .and_then(|(_, r)| r.split_once(" (in "))
        .map(|(_, r)| r.trim_end().trim_end_matches(')'))
        .unwrap_or_else(|| panic!("no relative refresh time: {said}"));
    assert!(
        rel.starts_with("3") || rel.starts_with("4"),
        "about 40m: {rel}"
    );
    let mut c = bare_cmd();
    c.arg("status").arg("--json").arg("--file").arg(&env.output);
    let v: serde_json::Value = serde_json::from_slice(&run(c).stdout).unwrap();
    let secs = v["refresh_in_secs"].as_i64().unwrap();
    assert!((30 * 60..=50 * 60).contains(&secs), "{v}");
    d.stop(Duration::from_secs(10));
}
