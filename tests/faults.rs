//! GitHub-side faults against the real binary: 5xx bursts, refused and reset connections,
//! hangs, garbled and oversized answers, rate limits, clock skew, permanent errors, a token
//! expiring while GitHub is down, and replication lag. Each test checks that the file always
//! holds a complete valid token (a watcher re-reads it throughout), that retries back off and
//! stay capped, that STATUS and the journal say why, and that no secret reaches the output
//! (every daemon here logs at `RUST_LOG=trace`). Tables of results: `docs/reliability.md`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rustix::process::Signal;

fn all_output(log: &str, n: &mut Notify) -> String {
    format!("{log}\n{}", n.all())
}

/// Stop the daemon (SIGTERM, 10 s) and assert no secret is in its output or its notify
/// messages; its exit code.
fn stop_clean(d: Proc, n: &mut Notify, env: &TestEnv) -> Option<i32> {
    let (code, log) = d.stop(Duration::from_secs(10));
    assert_no_secrets(&all_output(&log, n), &env.secrets());
    code
}

#[test]
#[ignore = "slow: full tier only (cargo test --workspace --locked -- --include-ignored)"]
fn server_error_bursts_back_off_with_jitter_keep_the_token_and_recover() {
    let env = TestEnv::new();
    let (mut n, d) = daemon_ready(&env, FAST);
    let mut all_gaps = Vec::new();
    let seen = watching(
        vec![env.output.clone()],
        Duration::from_micros(200),
        valid_on(&env.fake),
        || {
            for burst in [&[500u16, 502, 503][..], &[504, 503]] {
                let pushed = std::time::SystemTime::now();
                for code in burst {
                    env.fake.push_fault(Fault::once(
                        Route::AccessTokens,
                        FaultKind::status(*code, r#"{"message":"Server Error"}"#),
                    ));
                }
                // once the first faulted request arrived, the file must not change until recovery
                // (the target's previous refresh, if one was in flight, has been published)
                wait_until("the first faulted mint", Duration::from_secs(10), || {
                    env.fake.pending_faults().len() < burst.len()
                });
                let held = env.read_file();
                wait_until("recovery after the burst", Duration::from_secs(40), || {
                    env.fake.pending_faults().is_empty()
                        && generation(&env.output) > held.generation
                });
                let after = env.read_file();
                let times = mint_times_since(&env.fake, pushed);
                // the requests that met the burst, then the first good one
                let burst_times = &times[..burst.len() + 1];
                let g = gaps(burst_times);
                for (i, gap) in g.iter().enumerate() {
                    let lo = 2f64.powi(i as i32);
                    assert!(
                        *gap >= lo - 0.05 && *gap <= 2.0 * lo + 1.5,
                        "attempt {} waited {gap:.2}s, expected {lo}–{}s (backoff with jitter): {g:?}",
                        i + 1,
                        2.0 * lo
                    );
                }
                all_gaps.extend(g);
                assert_eq!(
                    after.generation,
                    held.generation + 1,
                    "the file was not rewritten during the burst, and at once after it"
                );
                assert!(env.fake.is_token_valid(after.token.expose()));
            }
        },
    );
    assert_eq!(seen.bad, 0, "a reader saw: {:?}", seen.problems);
    let status = n
        .statuses()
        .into_iter()
        .find(|s| s.contains("GitHub answered 50"))
        .unwrap_or_default();
    assert!(
        status.contains("retry") && status.contains("current token valid"),
        "STATUS names the error, the retry and the kept token: {status:?}"
    );
    let (code, log) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    for code in ["500", "502", "503", "504"] {
        assert!(
            log.contains(&format!("GitHub answered {code}")),
            "the journal names {code}"
        );
    }
    eprintln!(
        "5xx bursts: backoff gaps {:?} s; watcher reads {}",
        all_gaps
            .iter()
            .map(|g| (g * 100.0).round() / 100.0)
            .collect::<Vec<_>>(),
        seen.reads
    );
    assert_no_secrets(&all_output(&log, &mut n), &env.secrets());
}

#[test]
#[ignore = "slow: full tier only (cargo test --workspace --locked -- --include-ignored)"]
fn network_and_body_faults_are_retried_and_the_first_good_answer_recovers() {
    let env = TestEnv::new();
    let mut args = FAST.to_vec();
    args.extend(["--http-timeout", "2s"]);
    let (mut n, d) = daemon_ready_with(&env, &args, UNDER_SYSTEMD);
    let cases: Vec<(&str, FaultKind, &str)> = vec![
        ("reset", FaultKind::DropConnection, "cannot reach GitHub"),
        ("truncated", FaultKind::TruncatedBody, "answer cut short"),
        ("non-JSON", FaultKind::NonJson, "not the expected JSON"),
        (
            "no token",
            FaultKind::missing_field("token"),
            "missing field `token`",
        ),
        (
            "no expires_at",
            FaultKind::missing_field("expires_at"),
            "missing field `expires_at`",
        ),
        (
            "oversized",
            FaultKind::Oversized(2 << 20),
            "answer larger than 1024 KiB",
        ),
        ("hang", FaultKind::Hang, "timed out"),
    ];
    let mut figures = Vec::new();
    let seen = watching(
        vec![env.output.clone()],
        Duration::from_micros(200),
        valid_on(&env.fake),
        || {
            for (name, kind, expect) in &cases {
                let pushed = std::time::SystemTime::now();
                env.fake
                    .push_fault(Fault::once(Route::AccessTokens, kind.clone()));
                wait_until(
                    &format!("{name}: the fault is met"),
                    Duration::from_secs(10),
                    || env.fake.pending_faults().is_empty(),
                );
                let faulted_at = Instant::now();
                let held = generation(&env.output);
                wait_until(
                    &format!("{name}: recovery"),
                    Duration::from_secs(15),
                    || generation(&env.output) > held,
                );
                let times = mint_times_since(&env.fake, pushed);
                let gap = gaps(&times[..2])[0];
                figures.push(format!("{name}: {gap:.2}s"));
                // the faulted request, then a wait of 1–2 s (plus the 2 s timeout for a hang)
                let (lo, hi) = if *name == "hang" {
                    (3.0, 5.5)
                } else {
                    (1.0, 3.5)
                };
                assert!(
                    (lo - 0.05..=hi).contains(&gap),
                    "{name}: the retry came {gap:.2}s after the faulted request, expected {lo}–{hi}s"
                );
                assert!(
                    faulted_at.elapsed() < Duration::from_secs(10),
                    "{name}: recovered on the first good answer"
                );
                d.wait_log(expect, Duration::from_secs(5), |l| l.contains(expect));
            }
            // a large answer under the 1 MiB cap is fine: the very next mint succeeds
            let held = generation(&env.output);
            let errors_before = d.log().matches(" WARN ").count();
            env.fake.push_fault(Fault::once(
                Route::AccessTokens,
                FaultKind::Oversized(900 << 10),
            ));
            wait_until("a 900 KiB answer", Duration::from_secs(10), || {
                env.fake.pending_faults().is_empty() && generation(&env.output) > held
            });
            assert_eq!(
                d.log().matches(" WARN ").count(),
                errors_before,
                "900 KiB is under the cap"
            );
        },
    );
    assert_eq!(seen.bad, 0, "a reader saw: {:?}", seen.problems);
    eprintln!("retry after each fault: {}", figures.join(", "));
    assert_eq!(stop_clean(d, &mut n, &env), Some(0));
}

#[test]
fn connection_refused_until_github_appears_then_ready() {
    let port = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("app.pem");
    let config = FakeConfig::standard();
    write_key(&key, &config.app().key.pkcs1_pem);
    let output = dir.path().join("out/token.json");
    let mut n = Notify::new(dir.path());
    let mut c = fast_run_cmd(&format!("http://127.0.0.1:{port}"), &key, &output);
    c.env("NOTIFY_SOCKET", &n.path);
    let started = Instant::now();
    let mut d = Proc::spawn(c);
    // the first extension comes before the first attempt; the one after it says why
    let status = loop {
        let d = n.wait_for(
            "EXTEND_TIMEOUT_USEC while GitHub is unreachable",
            Duration::from_secs(10),
            |l| l.starts_with("EXTEND_TIMEOUT_USEC="),
        );
        if status_of(&d).contains("unreachable") {
            break d;
        }
    };
    assert!(
        status_of(&status).contains("unreachable")
            && status_of(&status).contains("no valid token yet"),
        "{status}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(d.exited(), None, "a refused connection is not fatal");
    assert!(!output.exists());
    let fake = FakeGithub::start_blocking(format!("127.0.0.1:{port}").parse().unwrap(), config)
        .expect("the fake GitHub takes the port");
    let appeared = Instant::now();
    ready(&mut n);
    let waited = appeared.elapsed();
    eprintln!(
        "connection refused for {:.1}s; READY {:.1}s after GitHub appeared",
        (appeared - started).as_secs_f64(),
        waited.as_secs_f64()
    );
    // attempts at ≈0, 1–2, 3–6, 7–14 s: the next one after 3 s comes within 11 s
    assert!(waited < Duration::from_secs(12), "{waited:?}");
    let file = github_token_refresher::token_file::read(&output).unwrap();
    assert!(fake.is_token_valid(file.token.expose()));
    let tokens: Vec<String> = fake.tokens().into_iter().map(|t| t.token).collect();
    let (code, log) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(log.contains("cannot reach GitHub"), "{log}");
    assert_no_secrets(&all_output(&log, &mut n), &tokens);
}

#[test]
#[ignore = "slow: full tier only (cargo test --workspace --locked -- --include-ignored)"]
fn retries_are_capped_per_minute_even_when_github_says_retry_after_one_second() {
    const CAP: usize = github_token_refresher::schedule::MAX_ATTEMPTS_PER_MINUTE;
    let env = TestEnv::new();
    let (mut n, d) = daemon_ready(&env, FAST);
    let pushed = std::time::SystemTime::now();
    env.fake.push_fault(Fault::new(
        Route::AccessTokens,
        FaultKind::status_with_headers(
            429,
            r#"{"message":"Too Many Requests"}"#,
            &[("retry-after", "1")],
        ),
        100,
    ));
    wait_until(
        "the cap's worth of attempts",
        Duration::from_secs(40),
        || mint_times_since(&env.fake, pushed).len() >= CAP,
    );
    let first = mint_times_since(&env.fake, pushed)[0];
    // observe until 35 s after the first attempt: without the cap, 1–2 s waits would have
    // made 17–35 attempts by then
    let until = first + Duration::from_secs(35);
    while std::time::SystemTime::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    let times = mint_times_since(&env.fake, pushed);
    assert_eq!(
        times.len(),
        CAP,
        "{CAP} attempts, then a pause until the minute is over; gaps {:?}",
        gaps(&times)
    );
    assert!(max_in_window(&times, Duration::from_secs(60)) <= CAP);
    for g in gaps(&times) {
        assert!(g >= 0.95, "Retry-After: 1 was honoured: {:?}", gaps(&times));
    }
    let status = n
        .statuses()
        .into_iter()
        .rev()
        .find(|s| s.contains("429"))
        .unwrap_or_default();
    assert!(
        status.contains(&format!("retry {CAP} in")) && status.contains("current token valid"),
        "{status}"
    );
    eprintln!(
        "429 Retry-After 1: {} attempts in the first 35 s (cap {CAP}/min), gaps {:?}",
        times.len(),
        gaps(&times)
            .iter()
            .map(|g| (g * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    );
    env.fake.clear_faults();
    stop_clean(d, &mut n, &env);
}

#[test]
#[ignore = "slow: full tier only (cargo test --workspace --locked -- --include-ignored)"]
fn rate_limits_wait_as_told_and_never_hammer() {
    let env = TestEnv::new();
    let (mut n, d) = daemon_ready(&env, FAST);
    let secondary = r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}"#;
    let primary = r#"{"message":"API rate limit exceeded for installation ID 100."}"#;

    // (what, fault, the least wait in seconds)
    let mut figures = Vec::new();
    for (what, make, least) in [
        (
            "429 Retry-After: 3",
            Box::new(|_: i64| FaultKind::status_with_headers(429, "{}", &[("retry-after", "3")]))
                as Box<dyn Fn(i64) -> FaultKind>,
            3.0,
        ),
        (
            "403 x-ratelimit-remaining: 0 + reset in 4 s",
            Box::new(|now: i64| {
                FaultKind::status_with_headers(
                    403,
                    primary,
                    &[
                        ("x-ratelimit-remaining", "0"),
                        ("x-ratelimit-reset", &(now + 4).to_string()),
                    ],
                )
            }),
            3.0,
        ),
        (
            "403 secondary limit + Retry-After: 2",
            Box::new(|_| FaultKind::status_with_headers(403, secondary, &[("retry-after", "2")])),
            2.0,
        ),
    ] {
        let pushed = std::time::SystemTime::now();
        let fake_now = env.fake.now().timestamp();
        env.fake
            .push_fault(Fault::once(Route::AccessTokens, make(fake_now)));
        wait_until(
            &format!("{what}: the retry"),
            Duration::from_secs(20),
            || {
                env.fake.pending_faults().is_empty()
                    && mint_times_since(&env.fake, pushed).len() >= 2
            },
        );
        let reqs: Vec<_> = env
            .fake
            .requests_to("POST", "/app/installations/100/access_tokens")
            .into_iter()
            .filter(|r| r.time >= pushed)
            .collect();
        let gap = gaps(&[reqs[0].time, reqs[1].time])[0];
        figures.push(format!("{what}: next request after {gap:.2}s"));
        assert!(gap >= least, "{what}: came back after {gap:.2}s");
        assert!(gap <= least + 3.0, "{what}: but not much later: {gap:.2}s");
        if what.contains("reset") {
            assert!(
                reqs[1].fake_time.timestamp() >= fake_now + 4,
                "not before x-ratelimit-reset"
            );
        }
    }
    // a secondary limit without retry-after (and a primary limit not exhausted): at least a
    // minute, as GitHub's docs ask
    n.drain();
    let k = mint_times(&env.fake).len();
    env.fake.push_fault(Fault::new(
        Route::AccessTokens,
        FaultKind::status(403, secondary),
        1,
    ));
    let status = wait_status(
        &mut n,
        "STATUS with the secondary limit",
        Duration::from_secs(10),
        |s| s.contains("secondary rate limit"),
    );
    assert!(
        status.contains("retry 1 in 1m"),
        "waits a minute, and says so: {status}"
    );
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        mint_times(&env.fake).len(),
        k + 1,
        "no request during the minute"
    );
    eprintln!("{}", figures.join("; "));
    let (_, log) = d.stop(Duration::from_secs(10));
    assert!(log.contains("rate limit"), "{log}");
    assert_no_secrets(&all_output(&log, &mut n), &env.secrets());
}

/// JWTs GitHub refused for their times, among all requests so far.
fn refused_jwts(fake: &FakeGithub) -> usize {
    fake.requests()
        .iter()
        .filter_map(|r| {
            let jwt = r.header("authorization")?.strip_prefix("Bearer ")?;
            jwt.starts_with("eyJ")
                .then(|| (jwt_claims(jwt), r.fake_time.timestamp()))
        })
        .filter(|(c, now)| {
            let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
            iat > *now || exp <= *now || exp - iat > 600
        })
        .count()
}

#[test]
fn github_clock_five_minutes_behind_learns_the_offset_once_and_keeps_it() {
    let env = TestEnv::new();
    env.fake.set_clock_offset(-300);
    let (mut n, d) = daemon_ready(&env, FAST);
    assert_eq!(
        refused_jwts(&env.fake),
        1,
        "one JWT refused ('iat' in the future), then signed by GitHub's clock"
    );
    assert!(env.fake.is_token_valid(env.read_file().token.expose()));
    // a reload signs a new JWT (a second later, so that it differs): the learned offset is
    // still used
    std::thread::sleep(Duration::from_secs(2));
    let before = env.fake.mint_count();
    d.signal(Signal::HUP);
    n.wait_for("READY=1 after reload", Duration::from_secs(10), |l| {
        l == "READY=1"
    });
    wait_until("mints after the reload", Duration::from_secs(10), || {
        env.fake.mint_count() >= before + 3
    });
    let jwts: std::collections::HashSet<String> = env
        .fake
        .requests()
        .iter()
        .filter_map(|r| r.header("authorization").map(str::to_owned))
        .filter(|a| a.starts_with("Bearer eyJ"))
        .collect();
    let claims: Vec<_> = jwts
        .iter()
        .map(|a| jwt_claims(a.strip_prefix("Bearer ").unwrap()))
        .collect();
    assert!(jwts.len() >= 3, "a new JWT after the reload: {claims:?}");
    assert_eq!(refused_jwts(&env.fake), 1, "no second 401");
    let (_, log) = d.stop(Duration::from_secs(10));
    assert_eq!(
        log.matches("signing again with GitHub's clock").count(),
        1,
        "{log}"
    );
    assert!(log.contains("clock_offset_secs=-30"), "{log}");
    assert_no_secrets(&all_output(&log, &mut n), &env.secrets());
}

#[test]
#[ignore = "slow: full tier only (cargo test --workspace --locked -- --include-ignored)"]
fn github_clock_five_minutes_ahead_schedules_by_githubs_clock() {
    // 20-second tokens: a daemon that trusted its own clock would think they had 5 minutes
    // more and let them expire
    let env = TestEnv::new();
    env.fake.set_clock_offset(300);
    env.fake.set_token_lifetime(Duration::from_secs(20));
    let (mut n, d) = daemon_ready(&env, &schedule("30m", "8s"));
    let seen = watching(
        vec![env.output.clone()],
        Duration::from_millis(2),
        valid_on(&env.fake),
        || {
            std::thread::sleep(Duration::from_secs(30));
        },
    );
    assert_eq!(seen.bad, 0, "{:?}", seen.problems);
    assert!(
        env.fake.mint_count() >= 3,
        "refreshed by GitHub's clock: {} mints in 30 s",
        env.fake.mint_count()
    );
    assert_eq!(refused_jwts(&env.fake), 0);
    stop_clean(d, &mut n, &env);
}

#[test]
#[ignore = "slow: full tier only (cargo test --workspace --locked -- --include-ignored)"]
fn permanent_errors_keep_the_token_say_why_and_do_not_loop() {
    let env = TestEnv::new();
    let (mut n, d) = daemon_ready_with(&env, FAST, UNDER_SYSTEMD);
    let cases: [(&str, Option<FaultKind>, &str); 4] = [
        (
            "401",
            Some(FaultKind::status(
                401,
                r#"{"message":"A JSON web token could not be decoded"}"#,
            )),
            "--app-id",
        ),
        ("404", None, "install the App"),
        (
            "422",
            Some(FaultKind::status(
                422,
                r#"{"message":"There is at least one repository that does not exist or is not accessible to the parent installation."}"#,
            )),
            "--repositories",
        ),
        (
            "403",
            Some(FaultKind::status(
                403,
                r#"{"message":"Resource not accessible by integration"}"#,
            )),
            "permission",
        ),
    ];
    for (code, fault, hint) in &cases {
        let held = env.read_file();
        match fault {
            Some(f) => env
                .fake
                .push_fault(Fault::new(Route::AccessTokens, f.clone(), 1000)),
            None => env.fake.set_installation_gone(100, true),
        }
        let k = mint_times(&env.fake).len();
        // a reload mints at once (after the first permanent error the next try is 5 min away)
        d.signal(Signal::HUP);
        let status = wait_status(
            &mut n,
            &format!("STATUS naming {code}"),
            Duration::from_secs(10),
            |s| s.contains(&format!("GitHub answered {code}")),
        );
        assert!(
            status.contains("retrying in 5m") && status.contains("current token valid"),
            "{code}: {status}"
        );
        std::thread::sleep(Duration::from_secs(4));
        let tries = mint_times(&env.fake).len() - k;
        assert!(
            tries <= 2,
            "{code}: no tight loop, {tries} mint requests in 4 s"
        );
        let now = env.read_file();
        assert_eq!(
            (now.generation, now.token.expose()),
            (held.generation + u64::from(tries == 2), now.token.expose()),
        );
        if tries == 1 {
            assert_eq!(now.token, held.token, "{code}: the old token is kept");
        }
        d.wait_log(&format!("{code} hint"), Duration::from_secs(2), |l| {
            l.lines()
                .any(|line| line.contains("ERROR") && line.contains(code) && line.contains(hint))
        });
        env.fake.clear_faults();
        env.fake.set_installation_gone(100, false);
    }
    // fixed (the App reinstalled, the key replaced): the next try succeeds
    n.drain();
    let held = generation(&env.output);
    d.signal(Signal::HUP);
    wait_until("recovery", Duration::from_secs(10), || {
        generation(&env.output) > held
    });
    wait_status(
        &mut n,
        "STATUS back to normal",
        Duration::from_secs(10),
        |s| s.starts_with("token valid until"),
    );
    stop_clean(d, &mut n, &env);

    // `once` exits 78 on each, with the hint
    let mut all = String::new();
    for (code, fault, hint) in &cases {
        match fault {
            Some(f) => env
                .fake
                .push_fault(Fault::new(Route::AccessTokens, f.clone(), 5)),
            None => env.fake.set_installation_gone(100, true),
        }
        let before = env.fake.requests().len();
        let out = once_trace(&env, &["--installation-id", "100"]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(78), "{code}: {t}");
        assert!(
            t.contains(code) && t.contains("hint:") && t.contains(hint),
            "{t}"
        );
        // resolve + mint; for a removed installation, resolving already answers 404
        let expected = if *code == "404" { 1 } else { 2 };
        assert_eq!(
            env.fake.requests().len() - before,
            expected,
            "{code}: once does not retry a permanent error"
        );
        env.fake.clear_faults();
        env.fake.set_installation_gone(100, false);
        all += &t;
    }
    assert_no_secrets(&all, &env.secrets());
}

#[test]
fn a_token_that_expires_while_github_is_down_is_reported_and_replaced_at_once() {
    let env = TestEnv::new();
    env.fake.set_token_lifetime(Duration::from_secs(4));
    let (mut n, d) = daemon_ready(&env, &schedule("30m", "1s"));
    env.fake.push_fault(Fault::new(
        Route::AccessTokens,
        FaultKind::status(503, r#"{"message":"Service Unavailable"}"#),
        1000,
    ));
    let held = env.read_file();
    let status = wait_status(
        &mut n,
        "STATUS saying EXPIRED",
        Duration::from_secs(15),
        |s| s.contains("EXPIRED"),
    );
    assert!(
        status.contains("503") && status.contains("retry"),
        "{status}"
    );
    d.wait_log("the EXPIRED error", Duration::from_secs(5), |l| {
        l.contains("has EXPIRED: GitHub answered 503")
    });
    // the file is left as it was: an expired token is never written, nor the file removed
    let now = env.read_file();
    assert_eq!(
        (now.generation, now.expires_at_unix),
        (held.generation, held.expires_at_unix)
    );
    assert!(!env.fake.is_token_valid(now.token.expose()));
    let mut c = bare_cmd();
    c.arg("status").arg("--output").arg(&env.output);
    let st = run(c);
    assert_eq!(st.status.code(), Some(1));
    assert!(text(&st).starts_with("expired:"), "{}", text(&st));

    env.fake.clear_faults();
    let back = Instant::now();
    wait_until("a fresh token", Duration::from_secs(20), || {
        generation(&env.output) > held.generation
    });
    let took = back.elapsed();
    let fresh = env.read_file();
    assert!(env.fake.is_token_valid(fresh.token.expose()));
    // the successful mint is published at once: file time ≈ mint request time
    let last_mint = *mint_times(&env.fake).last().unwrap();
    let published = std::fs::metadata(&env.output).unwrap().modified().unwrap();
    let lag = published.duration_since(last_mint).unwrap_or_default();
    assert!(
        lag < Duration::from_secs(2),
        "published {lag:?} after the mint"
    );
    wait_status(&mut n, "STATUS valid again", Duration::from_secs(10), |s| {
        s.starts_with("token valid until")
    });
    eprintln!(
        "expired during an outage: fresh token {:.1}s after GitHub came back (backoff), written {:.0} ms after the mint",
        took.as_secs_f64(),
        lag.as_secs_f64() * 1000.0
    );
    stop_clean(d, &mut n, &env);
}

#[test]
fn replication_lag_is_absorbed_by_verifying_before_publishing() {
    let mut figures = Vec::new();
    for (lag, expect_tries) in [(0u64, 1usize), (2, 4), (10, 4)] {
        let env = TestEnv::new();
        env.fake
            .set_token_activation_delay(Duration::from_secs(lag));
        let mut n = Notify::new(env.dir.path());
        let started = Instant::now();
        let d = daemon(
            &env,
            &n,
            &["--installation-id", "100", "--refresh-interval", "30m"],
        );
        ready(&mut n);
        let to_ready = started.elapsed();
        let verifies = env
            .fake
            .requests_to("GET", "/installation/repositories")
            .len();
        let token = env.read_file().token;
        let active = env.fake.is_token_active(token.expose());
        let (_, log) = d.stop(Duration::from_secs(10));
        figures.push(format!(
            "lag {lag}s: READY after {:.2}s, {verifies} verify request(s), token active at READY: {active}",
            to_ready.as_secs_f64()
        ));
        match lag {
            0 => {
                assert_eq!(verifies, expect_tries);
                assert!(active);
            }
            2 => {
                assert!((2..=expect_tries).contains(&verifies), "{verifies}");
                assert!(active, "published only once GitHub accepts it");
                assert!(to_ready >= Duration::from_secs(2));
            }
            _ => {
                assert_eq!(verifies, expect_tries, "a bounded retry");
                assert!(!active);
                assert!(
                    to_ready < Duration::from_secs(8),
                    "published anyway after ≈3.5 s: {to_ready:?}"
                );
                assert!(log.contains("publishing it anyway"), "{log}");
            }
        }
        assert_no_secrets(&all_output(&log, &mut n), &env.secrets());
    }
    eprintln!("replication lag: {}", figures.join("; "));
}
