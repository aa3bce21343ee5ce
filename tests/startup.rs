//! Start-up under systemd: before READY the daemon asks for more `TimeoutStartSec` ahead of
//! every mint attempt (`EXTEND_TIMEOUT_USEC`), enough for the attempt's worst case, so a
//! slow but healthy first mint is never killed. The same on the real systemd:
//! `tests/e2e/systemd.sh` ("slow first mint"). And `check --offline`, with which
//! `setup.sh --dry-run` validates settings through the binary without a network.

mod common;

use std::time::{Duration, Instant};

use common::*;
use fake_github::{Fault, FaultKind, Route};

fn extension(datagram: &str) -> Option<Duration> {
    datagram
        .lines()
        .find_map(|l| l.strip_prefix("EXTEND_TIMEOUT_USEC="))
        .map(|v| Duration::from_micros(v.parse().expect("a number of microseconds")))
}

#[test]
fn a_slow_first_mint_is_covered_by_an_extension_sent_before_it_starts() {
    let env = TestEnv::new();
    let slow = Duration::from_secs(3);
    env.fake
        .push_fault(Fault::once(Route::AccessTokens, FaultKind::Delay(slow)));
    let mut n = Notify::new(env.dir.path());
    let started = Instant::now();
    let d = daemon(
        &env,
        &n,
        &["--http-timeout", "10s", "--installation-id", "100"],
    );
    let first = n.wait_for(
        "EXTEND_TIMEOUT_USEC before the first mint",
        Duration::from_secs(10),
        |l| l.starts_with("EXTEND_TIMEOUT_USEC=") || l == "READY=1",
    );
    let asked_after = started.elapsed();
    let by =
        extension(&first).unwrap_or_else(|| panic!("READY came before any extension: {first:?}"));
    assert!(
        asked_after < slow,
        "the extension must come before the slow answer, not after it ({asked_after:?})"
    );
    // 10 s × (2 resolve + 2 mint + 4 verify) + 3.5 s of verify pauses + 5 s to publish
    assert_eq!(by, Duration::from_millis(88_500), "{first}");
    assert!(
        status_of(&first).contains("minting the first token"),
        "{first}"
    );
    ready(&mut n);
    let took = started.elapsed();
    assert!(took >= slow, "the mint was delayed ({took:?})");
    assert_eq!(env.fake.mint_count(), 1, "one attempt, not a retry");
    let (code, log) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    assert!(
        !log.contains(" WARN "),
        "a slow answer is not a failure: {log}"
    );
    let after_ready: Vec<_> = n
        .seen
        .iter()
        .skip_while(|m| !m.lines().any(|l| l == "READY=1"))
        .filter(|m| extension(m).is_some())
        .collect();
    assert!(
        after_ready.is_empty(),
        "no extension after READY: {after_ready:?}"
    );
    assert_no_secrets(&format!("{log}\n{}", n.all()), &env.secrets());
}

#[test]
fn every_retry_before_ready_gets_an_extension_covering_its_wait_and_attempt() {
    let env = TestEnv::new();
    env.fake.push_fault(Fault::new(
        Route::AccessTokens,
        FaultKind::status(503, r#"{"message":"Service Unavailable"}"#),
        2,
    ));
    let mut n = Notify::new(env.dir.path());
    let d = daemon(
        &env,
        &n,
        &["--http-timeout", "2s", "--installation-id", "100"],
    );
    ready(&mut n);
    let extensions: Vec<Duration> = n.seen.iter().filter_map(|m| extension(m)).collect();
    // one before each of the 3 attempts, one after each of the 2 failures
    assert_eq!(extensions.len(), 5, "{:#?}", n.seen);
    let attempt = Duration::from_millis(8 * 2_000 + 3_500 + 5_000);
    assert!(extensions.iter().all(|&e| e >= attempt), "{extensions:?}");
    let (code, log) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn check_offline_validates_settings_and_key_without_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("app.pem");
    write_key(
        &key,
        &fake_github::FakeConfig::standard().app().key.pkcs1_pem,
    );
    let output = dir.path().join("never/token.json");
    let check = |app_id: &str, key: &std::path::Path| {
        let mut c = bare_cmd();
        c.args([
            "check",
            "--offline",
            "--app-id",
            app_id,
            "--installation-id",
            "100",
        ])
        .args(["--api-url", &format!("http://127.0.0.1:{}", closed_port())])
        .arg("--private-key-file")
        .arg(key)
        .arg("--output")
        .arg(&output);
        run(c)
    };
    let ok = check("1234", &key);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    assert!(
        text(&ok).contains("settings and key valid (offline"),
        "{}",
        text(&ok)
    );
    assert!(
        !output.parent().unwrap().exists(),
        "offline creates no directory"
    );

    let bad_id = check("12 34", &key);
    assert_eq!(bad_id.status.code(), Some(78), "{}", text(&bad_id));
    assert!(
        text(&bad_id).contains("FAIL  configuration"),
        "{}",
        text(&bad_id)
    );

    let not_a_key = dir.path().join("not-a-key.pem");
    write_key(&not_a_key, "not a key\n");
    let bad_key = check("1234", &not_a_key);
    assert_eq!(bad_key.status.code(), Some(78), "{}", text(&bad_key));
    assert!(
        text(&bad_key).contains("FAIL  private key"),
        "{}",
        text(&bad_key)
    );
}
