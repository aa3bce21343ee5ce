//! Tokens that stop working before their hour is up, against the fake GitHub's
//! `DELETE /installation/token`: on stop (`revoke_on_stop`), on removal by a reload, after a
//! successor's grace time (`revoke_superseded_after`), and by hand (`revoke --file`); and the
//! fingerprints that name a token on every line without printing it.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use github_token_refresher::fingerprint;
use github_token_refresher::github::Client;
use github_token_refresher::secret::Secret;
use github_token_refresher::token_file;
use rustix::process::Signal;

/// What a consumer that kept `token` gets from GitHub right now: the HTTP status of
/// `GET /installation/repositories` (200 or 401).
fn consumer_sees(fake: &FakeGithub, token: &str) -> u16 {
    let client = Client::new(&fake.url(), Duration::from_secs(5)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match rt.block_on(client.installation_repositories(&Secret::new(token))) {
        Ok(_) => 200,
        Err(e) => e.status().unwrap_or(0),
    }
}

fn ready_daemon(env: &TestEnv, extra: &[&str]) -> (Proc, Notify) {
    let mut args = vec!["--installation-id", "100"];
    args.extend_from_slice(extra);
    let (n, d) = daemon_ready(env, &args);
    (d, n)
}

#[test]
fn stop_with_revoke_on_stop_revokes_the_token_and_removes_the_file() {
    let env = TestEnv::new();
    let prom = env.dir.path().join("gtr.prom");
    let (d, _n) = ready_daemon(
        &env,
        &["--revoke-on-stop", "--metrics-file", prom.to_str().unwrap()],
    );
    let token = env.read_file().token.expose().to_owned();
    assert_eq!(consumer_sees(&env.fake, &token), 200);
    wait_until("the expiry in the metrics", Duration::from_secs(5), || {
        fs::read_to_string(&prom).is_ok_and(|m| m.contains("token_expiry_timestamp_seconds{"))
    });
    let started = Instant::now();
    let (code, log) = d.stop(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{log}");
    assert!(started.elapsed() < Duration::from_secs(3), "{log}");
    assert!(!env.output.exists(), "the file is gone");
    assert!(!env.fake.is_token_valid(&token));
    assert_eq!(consumer_sees(&env.fake, &token), 401);
    let fp = fingerprint::of(&token);
    assert!(
        log.lines()
            .any(|l| l.contains("revoked the token") && l.contains(&fp)),
        "{log}"
    );
    assert_eq!(
        env.fake.requests_to("DELETE", "/installation/token").len(),
        1
    );
    assert_no_secrets(&log, &env.secrets());
    let metrics = fs::read_to_string(&prom).unwrap();
    assert!(
        !metrics.contains("token_expiry_timestamp_seconds{"),
        "a revoked token has no expiry to alert on:\n{metrics}"
    );
}

#[test]
fn by_default_a_stop_leaves_the_token_and_the_file_for_the_next_start() {
    let env = TestEnv::new();
    let (d, _n) = ready_daemon(&env, &[]);
    let token = env.read_file().token.expose().to_owned();
    let (code, log) = d.stop(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{log}");
    assert!(env.output.exists());
    assert!(env.fake.is_token_valid(&token));
    assert!(
        env.fake
            .requests_to("DELETE", "/installation/token")
            .is_empty()
    );
}

#[test]
fn a_stop_waits_at_most_five_seconds_on_a_hanging_github_and_still_removes_the_file() {
    let env = TestEnv::new();
    let (d, _n) = ready_daemon(&env, &["--revoke-on-stop"]);
    let token = env.read_file().token.expose().to_owned();
    env.fake
        .push_fault(Fault::new(Route::RevokeToken, FaultKind::Hang, 5));
    let started = Instant::now();
    let (code, log) = d.stop(Duration::from_secs(20));
    let took = started.elapsed();
    eprintln!("stop against a hanging GitHub took {took:?}");
    assert_eq!(code, Some(0), "a failed revocation is not fatal: {log}");
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert!(!env.output.exists(), "the file is removed first");
    assert!(log.contains("cannot revoke the token"), "{log}");
    assert!(env.fake.is_token_valid(&token), "GitHub never answered");
}

fn target(env: &TestEnv, name: &str, extra: &str) -> String {
    format!(
        "[[target]]\nname = \"{name}\"\ninstallation_id = 100\noutput = \"{}\"\n{extra}\n",
        out(env, name).display()
    )
}

fn out(env: &TestEnv, name: &str) -> PathBuf {
    env.dir.path().join("tokens").join(name).join("token.json")
}

fn token_in(path: &Path) -> String {
    token_file::read(path).unwrap().token.expose().to_owned()
}

#[test]
fn a_target_removed_by_reload_is_revoked_and_its_file_removed_and_the_others_untouched() {
    let env = TestEnv::new();
    let keep = target(&env, "keep", "");
    let gone = target(&env, "sandbox-a", "revoke_on_stop = true");
    let config = write_targets_toml(&env, &(keep.clone() + &gone));
    let (_n, d, _) = daemon_config_ready(&env, &config);
    let (kept, removed) = (
        token_in(&out(&env, "keep")),
        token_in(&out(&env, "sandbox-a")),
    );
    write_targets_toml(&env, &keep);
    d.signal(Signal::HUP);
    wait_until(
        "the removed target's token revoked",
        Duration::from_secs(10),
        || !env.fake.is_token_valid(&removed),
    );
    assert!(!out(&env, "sandbox-a").exists());
    assert_eq!(consumer_sees(&env.fake, &removed), 401);
    assert!(env.fake.is_token_valid(&kept));
    assert_eq!(token_in(&out(&env, "keep")), kept);
    // a stop afterwards: "keep" has no revoke_on_stop
    let (code, log) = d.stop(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{log}");
    assert!(env.fake.is_token_valid(&kept));
    assert!(
        log.contains("target_name=sandbox-a") && log.contains("its target was removed"),
        "{log}"
    );
}

#[test]
fn a_superseded_token_answers_401_once_its_grace_time_is_over() {
    const GRACE: Duration = Duration::from_secs(2);
    let env = TestEnv::new();
    let (d, _n) = ready_daemon(
        &env,
        &[
            "--refresh-interval",
            "5s",
            "--jitter",
            "0s",
            "--min-remaining",
            "1s",
            "--revoke-superseded-after",
            "2s",
        ],
    );
    let first = env.read_file().token.expose().to_owned();
    // the successor lands; from then on the first token has GRACE left
    wait_until("a second token", Duration::from_secs(15), || {
        generation(&env.output) >= 2
    });
    let published = Instant::now();
    assert_ne!(token_in(&env.output), first);
    assert_eq!(
        consumer_sees(&env.fake, &first),
        200,
        "still valid within the grace time"
    );
    let mut invalid_after = None;
    while published.elapsed() < GRACE + Duration::from_secs(3) {
        if !env.fake.is_token_valid(&first) {
            invalid_after = Some(published.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let invalid_after = invalid_after.expect("the superseded token was revoked");
    eprintln!(
        "the superseded token stopped working {invalid_after:?} after its successor was published (grace 2s)"
    );
    assert!(
        invalid_after >= GRACE - Duration::from_millis(300)
            && invalid_after < GRACE + Duration::from_millis(1500),
        "{invalid_after:?}"
    );
    assert_eq!(consumer_sees(&env.fake, &first), 401);
    assert!(env.fake.is_token_valid(&token_in(&env.output)));
    let (code, log) = d.stop(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("superseded 2s ago"), "{log}");
    // at most one token outside the grace time: every one but the last is revoked by now
    let tokens = env.fake.tokens();
    let valid = tokens
        .iter()
        .filter(|t| env.fake.is_token_valid(&t.token))
        .count();
    assert_eq!(valid, 1, "{} minted", tokens.len());
}

fn revoke(env: &TestEnv, extra: &[&str]) -> std::process::Output {
    let mut c = bare_cmd();
    c.arg("revoke").arg("--file").arg(&env.output).args(extra);
    run(c)
}

#[test]
fn revoke_command_revokes_says_so_and_exits_0_also_when_already_invalid() {
    let env = TestEnv::new();
    let o = env.once(&["--installation-id", "100"]);
    assert!(o.status.success(), "{}", text(&o));
    let token = env.read_file().token.expose().to_owned();
    let fp = fingerprint::of(&token);
    // the file names its API; nothing else is needed
    let o = revoke(&env, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "revoked the token in '{}' (fingerprint {fp})",
            env.output.display()
        )),
        "{}",
        text(&o)
    );
    assert_eq!(consumer_sees(&env.fake, &token), 401);
    let o = revoke(&env, &["--remove"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("was already invalid"), "{}", text(&o));
    assert!(!env.output.exists());
    assert_no_secrets(&text(&o), &env.secrets());
    // nothing there any more
    let o = revoke(&env, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("does not exist"), "{}", text(&o));
}

#[test]
fn revoke_command_exits_69_when_github_is_unavailable_and_keeps_the_file() {
    let env = TestEnv::new();
    assert!(env.once(&["--installation-id", "100"]).status.success());
    let token = env.read_file().token.expose().to_owned();
    env.fake.push_fault(Fault::once(
        Route::RevokeToken,
        FaultKind::status(503, "{}"),
    ));
    let o = revoke(&env, &["--remove"]);
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    assert!(
        env.output.exists(),
        "a token that may still work is not forgotten"
    );
    assert!(env.fake.is_token_valid(&token));
    let port = closed_port().to_string();
    let o = revoke(&env, &["--api-url", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    let o = revoke(&env, &["--api-url", "http://example.com"]);
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));
    assert!(
        text(&o).contains("--api-url 'http://example.com'"),
        "{}",
        text(&o)
    );
    assert_no_secrets(&text(&o), &env.secrets());
}

#[test]
fn one_fingerprint_names_the_token_in_the_file_the_logs_status_and_the_fingerprint_command() {
    let env = TestEnv::new();
    let o = env.once(&["--installation-id", "100"]);
    assert!(o.status.success(), "{}", text(&o));
    let file = env.read_file();
    let fp = fingerprint::of(file.token.expose());
    assert_eq!(fp.len(), 12);
    assert_eq!(file.fingerprint, fp);
    assert!(
        text(&o).contains(&format!("fingerprint {fp}")),
        "{}",
        text(&o)
    );
    let mut c = bare_cmd();
    c.arg("status").arg("--output").arg(&env.output);
    let s = run(c);
    assert!(
        text(&s).contains(&format!("fingerprint {fp}")),
        "{}",
        text(&s)
    );
    // the fingerprint command: a bare token, or the token file itself, on stdin
    for input in [
        format!("{}\n", file.token.expose()),
        fs::read_to_string(&env.output).unwrap(),
    ] {
        let mut c = bare_cmd();
        c.arg("fingerprint")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), fp);
    }
    let mut c = bare_cmd();
    c.arg("fingerprint");
    let o = run(c); // stdin is /dev/null
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no token on stdin"), "{}", text(&o));
    // the daemon's mint line carries it too
    let (d, _n) = ready_daemon(&env, &[]);
    wait_until("a fresh mint", Duration::from_secs(10), || {
        generation(&env.output) >= 2
    });
    let fp2 = fingerprint::of(env.read_file().token.expose());
    let (_, log) = d.stop(Duration::from_secs(15));
    assert!(
        log.lines()
            .any(|l| l.contains("minted a token") && l.contains(&format!("fingerprint={fp2}"))),
        "{log}"
    );
    assert_no_secrets(&log, &env.secrets());
}

#[test]
fn bad_revocation_settings_exit_78_naming_the_key_and_its_line() {
    let env = TestEnv::new();
    let config = write_targets_toml(
        &env,
        &format!(
            "revoke_on_stop = true\n{}",
            target(&env, "a", "revoke_superseded_after = \"2h\"")
        ),
    );
    let mut c = bare_cmd();
    c.arg("run").arg("--config").arg(&config);
    let o = run(c);
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "{}:9: revoke_superseded_after '2h': choose between 1s and 59m",
            config.display()
        )),
        "{}",
        text(&o)
    );
    let o = env.once(&[
        "--installation-id",
        "100",
        "--revoke-superseded-after",
        "0s",
    ]);
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));
    assert!(
        text(&o).contains("--revoke-superseded-after '0s'"),
        "{}",
        text(&o)
    );
    let o = env.once(&["--installation-id", "100", "--revoke-on-stop=maybe"]);
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));
    assert!(
        text(&o).contains("--revoke-on-stop 'maybe': expected true or false"),
        "{}",
        text(&o)
    );
}
