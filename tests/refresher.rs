//! The core refresher end to end: the real binary against the fake GitHub.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::*;
use rustix::process::Signal;

/// `sub` as App `app_id` (an ID or a client ID) for installation 100 against the fake, with
/// the test's key and output.
fn as_app(env: &TestEnv, sub: &str, app_id: &str) -> Command {
    let mut c = bare_cmd();
    c.args([
        sub,
        "--app-id",
        app_id,
        "--installation-id",
        "100",
        "--api-url",
        &env.fake.url(),
    ]);
    c.arg("--private-key-file")
        .arg(&env.key)
        .arg("--output")
        .arg(&env.output);
    c
}

#[test]
fn once_writes_a_working_token_with_a_pkcs1_key() {
    let env = TestEnv::new();
    let out = env.once(&["--installation-id", "100"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let file = env.read_file();
    assert!(
        env.fake.is_token_valid(file.token.expose()),
        "the written token works"
    );
    assert_eq!(file.installation_id, 100);
    assert_eq!(file.account, "acme");
    assert_eq!(file.app_id, "1234");
    assert_eq!(file.generation, 1);
    assert_eq!(file.api_url, env.fake.url());
    assert!(file.expires_at_unix > chrono::Utc::now().timestamp() + 3000);
    // the three fields consumers in the field read
    let raw: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&env.output).unwrap()).unwrap();
    assert!(
        raw["token"].is_string()
            && raw["expires_at"].is_string()
            && raw["expires_at_unix"].is_i64()
    );
    assert_eq!(
        fs::metadata(&env.output).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(env.output.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert!(text(&out).contains("token for acme (installation 100)"));
    assert_no_secrets(&text(&out), &env.secrets());
}

#[test]
fn pkcs8_key_and_jwt_claims() {
    let env = TestEnv::new();
    write_key(&env.key, &env.fake.app().key.pkcs8_pem);
    let out = env.once(&["--installation-id", "100"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mint = env
        .fake
        .requests_to("POST", "/app/installations/100/access_tokens");
    assert_eq!(mint.len(), 1);
    let auth = mint[0].header("authorization").unwrap();
    let claims = jwt_claims(auth.strip_prefix("Bearer ").unwrap());
    let now = chrono::Utc::now().timestamp();
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!(
        (now - 70..=now - 50).contains(&iat),
        "iat back-dated about 60 s: {claims}"
    );
    assert!(
        exp - iat <= 600 && exp > now,
        "exp within GitHub's 10 minutes: {claims}"
    );
    assert_eq!(claims["iss"], "1234");
    // GitHub's required headers
    assert!(
        mint[0]
            .header("user-agent")
            .unwrap()
            .starts_with("github-token-refresher/")
    );
    assert_eq!(
        mint[0].header("accept"),
        Some("application/vnd.github+json")
    );
    assert_eq!(mint[0].header("x-github-api-version"), Some("2022-11-28"));
}

#[test]
fn client_id_is_the_issuer_as_given() {
    let env = TestEnv::new();
    let client_id = env.fake.app().client_id.clone();
    let out = run(as_app(&env, "once", &client_id));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let req = &env
        .fake
        .requests_to("POST", "/app/installations/100/access_tokens")[0];
    let claims = jwt_claims(
        req.header("authorization")
            .unwrap()
            .strip_prefix("Bearer ")
            .unwrap(),
    );
    assert_eq!(claims["iss"], client_id.as_str());
}

#[test]
fn a_group_readable_key_is_refused_with_the_chmod_to_run() {
    let env = TestEnv::new();
    fs::set_permissions(&env.key, fs::Permissions::from_mode(0o644)).unwrap();
    let out = env.once(&["--installation-id", "100"]);
    assert_eq!(out.status.code(), Some(78));
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains(&format!("chmod 600 '{}'", env.key.display())),
        "{msg}"
    );
    assert_eq!(
        env.fake.requests().len(),
        0,
        "nothing sent with an unsafe key"
    );
}

#[test]
fn discovery_by_repo_org_and_user() {
    let env = TestEnv::new();
    let out = env.once(&["--repo", "acme/widgets"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(env.read_file().installation_id, 100);
    assert_eq!(
        env.fake
            .requests_to("GET", "/repos/acme/widgets/installation")
            .len(),
        1
    );

    let out = env.once(&["--owner", "acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(env.read_file().installation_id, 100);

    // a user account: /orgs answers 404, then /users
    let out = env.once(&["--owner", "octocat"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let file = env.read_file();
    assert_eq!(
        (file.installation_id, file.account.as_str()),
        (200, "octocat")
    );
    assert_eq!(
        env.fake
            .requests_to("GET", "/orgs/octocat/installation")
            .len(),
        1
    );
    assert_eq!(
        env.fake
            .requests_to("GET", "/users/octocat/installation")
            .len(),
        1
    );
    assert_eq!(file.generation, 3, "each write bumps the generation");
}

#[test]
fn scoping_is_sent_and_honoured() {
    let env = TestEnv::new();
    let out = env.once(&[
        "--installation-id",
        "100",
        "--repositories",
        "widgets",
        "--permissions",
        "contents=read,pull_requests=write",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let body = env
        .fake
        .requests_to("POST", "/app/installations/100/access_tokens")[0]
        .json()
        .unwrap();
    assert_eq!(body["repositories"], serde_json::json!(["widgets"]));
    assert_eq!(
        body["permissions"],
        serde_json::json!({"contents": "read", "pull_requests": "write"})
    );
    let file = env.read_file();
    assert_eq!(file.repositories, Some(vec!["widgets".to_string()]));
    assert_eq!(
        file.permissions.get("contents").map(String::as_str),
        Some("read")
    );
    let minted = env.fake.last_token().unwrap();
    assert_eq!(minted.repositories, Some(vec!["widgets".to_string()]));

    // an unknown repository: GitHub's 422, configuration error
    let out = env.once(&["--installation-id", "100", "--repositories", "nope"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let msg = text(&out);
    assert!(msg.contains("422") && msg.contains("hint:"), "{msg}");
    assert_eq!(
        env.read_file().generation,
        1,
        "the valid file was not replaced"
    );
}

#[test]
fn once_exit_statuses_for_github_errors() {
    let env = TestEnv::new();
    env.fake.set_installation_gone(100, true);
    let out = env.once(&["--installation-id", "100"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("404"));

    // nothing listening: 69
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut c = env.cmd("once");
    c.args(["--installation-id", "100", "--api-url", &url]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
    assert!(text(&out).contains("cannot reach GitHub"), "{}", text(&out));
}

#[test]
fn once_retries_a_transient_error() {
    let env = TestEnv::new();
    env.fake.push_fault(Fault::once(
        Route::AccessTokens,
        FaultKind::status(502, "<html>bad gateway</html>"),
    ));
    let out = env.once(&["--installation-id", "100"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(env.fake.mint_count(), 1);
}

#[test]
fn bad_flags_exit_78_with_one_clear_line() {
    let env = TestEnv::new();
    for (args, expect) in [
        (
            vec!["--installation-id", "100", "--refresh-interval", "45"],
            "--refresh-interval '45'",
        ),
        (
            vec!["--owner", "acme", "--repo", "acme/widgets"],
            "give only one of them",
        ),
        (
            vec!["--installation-id", "100", "--permissions", "contents"],
            "--permissions 'contents'",
        ),
        (
            vec![
                "--installation-id",
                "100",
                "--api-url",
                "http://example.com",
            ],
            "loopback",
        ),
        (
            vec!["--installation-id", "100", "--no-such-flag"],
            "--no-such-flag",
        ),
    ] {
        let out = env.once(&args);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(expect), "{args:?}: {}", text(&out));
    }
    let mut c = bare_cmd();
    c.args(["once", "--app-id", "12x"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out).contains("--app-id '12x'"), "{}", text(&out));
}

#[test]
fn status_exit_codes() {
    let env = TestEnv::new();
    let status = |extra: &[&str]| {
        let mut c = bare_cmd();
        c.arg("status").arg("--output").arg(&env.output).args(extra);
        run(c)
    };
    let out = status(&[]);
    assert_eq!(out.status.code(), Some(2), "missing: {}", text(&out));
    assert!(text(&out).contains("does not exist"));

    env.fake.set_token_lifetime(Duration::from_secs(300));
    assert_eq!(
        env.once(&["--installation-id", "100"]).status.code(),
        Some(0)
    );
    let out = status(&["--min-remaining", "1m"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).starts_with("valid:") && text(&out).contains("for acme"),
        "{}",
        text(&out)
    );
    // 5 minutes left is "expiring" with the default 10m
    let out = status(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = status(&["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "expiring");
    assert_eq!(v["installation_id"], 100);
    assert_no_secrets(&text(&out), &env.secrets());

    fs::write(&env.output, "{\"token\": 5").unwrap();
    assert_eq!(status(&[]).status.code(), Some(2));
}

#[test]
fn check_passes_and_fails_with_the_right_hint() {
    let env = TestEnv::new();
    let mut c = env.cmd("check");
    c.args(["--installation-id", "100", "--repositories", "widgets"]);
    let out = run(c);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    for step in [
        "ok    configuration complete",
        "ok    private key",
        "ok    GitHub accepts the App JWT: App \"",
        "ok    installation 100 on acme (Organization)",
        "ok    minted a token",
        "ok    the token works",
        "ok    output directory",
        "all checks passed",
    ] {
        assert!(t.contains(step), "missing step {step:?} in:\n{t}");
    }
    assert!(!env.output.exists(), "check does not write the token file");

    // wrong App ID: GitHub can't decode the JWT → hint about --app-id
    let out = run(as_app(&env, "check", "999"));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(78), "{t}");
    assert!(
        t.contains("FAIL  GitHub accepts the App JWT")
            && t.contains("hint: ")
            && t.contains("--app-id"),
        "{t}"
    );

    // an installation that doesn't exist
    let mut c = env.cmd("check");
    c.args(["--installation-id", "4242"]);
    let out = run(c);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(78), "{t}");
    assert!(
        t.contains("FAIL  installation 4242 resolves") && t.contains("install the App"),
        "{t}"
    );

    // missing configuration is the first failed step
    let mut c = bare_cmd();
    c.args(["check", "--installation-id", "100"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out).contains("FAIL  configuration: --app-id is missing"),
        "{}",
        text(&out)
    );
    assert_no_secrets(&text(&out), &env.secrets());
}

/// `run` refreshing every 2 s (at the default `RUST_LOG=debug`), with `extra`.
fn daemon_every_2s(env: &TestEnv, listener: &Notify, extra: &[&str]) -> Proc {
    let mut c = env.cmd("run");
    c.args(schedule("2s", "1s"));
    c.args(extra);
    c.env("NOTIFY_SOCKET", &listener.path);
    Proc::spawn(c)
}

/// A notify socket and [`daemon_every_2s`] with `extra` that has said READY=1 (waited for
/// 20 s); the READY=1 datagram too.
fn every_2s_ready(env: &TestEnv, extra: &[&str]) -> (Notify, Proc, String) {
    let mut n = Notify::new(env.dir.path());
    let d = daemon_every_2s(env, &n, extra);
    let ready = n.wait_for("READY=1", Duration::from_secs(20), |l| l == "READY=1");
    (n, d, ready)
}

#[test]
fn run_notifies_refreshes_reloads_and_stops() {
    let env = TestEnv::new();
    let (mut n, d, ready) = every_2s_ready(&env, &[]);
    assert!(ready.contains("STATUS=token valid until"), "{ready}");
    let first = env.read_file();
    assert!(env.fake.is_token_valid(first.token.expose()));

    // refreshes on schedule: a new generation within a few seconds
    wait_until("a scheduled refresh", Duration::from_secs(15), || {
        env.read_file().generation >= first.generation + 2
    });
    assert!(env.fake.mint_count() >= 3);

    // SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1, then a new token
    let before = env.fake.mint_count();
    d.signal(Signal::HUP);
    let reloading = n.wait_for("RELOADING=1", Duration::from_secs(10), |l| {
        l == "RELOADING=1"
    });
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading}"
    );
    n.wait_for("READY=1 after reload", Duration::from_secs(10), |l| {
        l == "READY=1"
    });
    wait_until("a mint after reload", Duration::from_secs(10), || {
        env.fake.mint_count() > before
    });

    d.signal(Signal::TERM);
    n.wait_for("STOPPING=1", Duration::from_secs(10), |l| l == "STOPPING=1");
    let (code, out) = d.finish(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("minted a token"), "{out}");
    assert_no_secrets(&out, &env.secrets());
}

#[test]
#[ignore = "slow: full tier only (cargo test --workspace --locked -- --include-ignored)"]
fn run_keeps_the_old_token_and_says_why_while_github_fails() {
    let env = TestEnv::new();
    let (mut n, d, _) = every_2s_ready(&env, &["--refresh-interval", "1s"]);
    let good = env.read_file();
    env.fake.push_fault(Fault::new(
        Route::AccessTokens,
        FaultKind::status(503, r#"{"message":"Service Unavailable"}"#),
        3,
    ));
    let status = n.wait_for("a STATUS naming the 503", Duration::from_secs(15), |l| {
        l.starts_with("STATUS=") && l.contains("503")
    });
    assert!(
        status.contains("retry") && status.contains("current token valid"),
        "{status}"
    );
    // the file is untouched meanwhile and recovers after the burst
    assert!(env.read_file().generation >= good.generation);
    wait_until("recovery after the burst", Duration::from_secs(30), || {
        env.fake.pending_faults().is_empty() && env.read_file().generation > good.generation + 1
    });
    let (_, out) = d.finish(Duration::from_secs(1));
    assert!(out.contains("503"), "{out}");
    assert_no_secrets(&out, &env.secrets());
}

#[test]
fn run_exits_78_when_the_first_mint_is_refused_and_no_file_exists() {
    let env = TestEnv::new();
    let n = Notify::new(env.dir.path());
    let mut c = env.cmd("run");
    c.args(["--installation-id", "4242"]);
    c.env("NOTIFY_SOCKET", &n.path);
    let d = Proc::spawn(c);
    let (code, out) = d.finish(Duration::from_secs(20));
    assert_eq!(code, Some(78), "{out}");
    assert!(out.contains("404"), "{out}");
}

#[test]
fn run_counts_a_valid_file_from_before_as_ready_at_once() {
    let env = TestEnv::new();
    assert_eq!(
        env.once(&["--installation-id", "100"]).status.code(),
        Some(0)
    );
    // GitHub is down; the daemon is still READY because the file holds a valid token
    env.fake
        .push_fault(Fault::new(Route::Any, FaultKind::status(503, "{}"), 1000));
    let mut n = Notify::new(env.dir.path());
    let d = daemon_every_2s(&env, &n, &[]);
    let ready = n.wait_for("READY=1", Duration::from_secs(10), |l| l == "READY=1");
    assert!(ready.contains("STATUS="), "{ready}");
    drop(d);
}

#[test]
fn run_with_a_rejected_reload_keeps_the_old_key() {
    let env = TestEnv::new();
    let (mut n, d, _) = every_2s_ready(&env, &["--refresh-interval", "30s"]);
    fs::write(&env.key, "garbage").unwrap();
    d.signal(Signal::HUP);
    let after = n.wait_for(
        "READY=1 after a rejected reload",
        Duration::from_secs(10),
        |l| l == "READY=1",
    );
    assert!(
        after.contains("reload rejected") && after.contains("private key file"),
        "{after}"
    );
    let before = env.fake.mint_count();
    // the old key still works: restore a good key file only later; a refresh now still mints
    write_key(&env.key, &env.fake.app().key.pkcs1_pem);
    d.signal(Signal::HUP);
    n.wait_for(
        "READY=1 after a good reload",
        Duration::from_secs(10),
        |l| l == "READY=1",
    );
    wait_until(
        "a mint with the reloaded key",
        Duration::from_secs(10),
        || env.fake.mint_count() > before,
    );
}

#[test]
fn trace_logs_never_contain_a_secret() {
    let env = TestEnv::new();
    let mut all = String::new();
    let mut c = env.cmd("once");
    c.args(["--installation-id", "100", "--repositories", "widgets"])
        .env("RUST_LOG", "trace");
    all += &text(&run(c));
    let mut c = env.cmd("check");
    c.args(["--owner", "octocat"]).env("RUST_LOG", "trace");
    all += &text(&run(c));
    let (mut n, d) = daemon_ready(&env, FAST);
    wait_until("three refreshes", Duration::from_secs(20), || {
        env.fake.mint_count() >= 5
    });
    // a permanent error too: logged with its hint, retried slowly
    env.fake.push_fault(Fault::once(
        Route::AccessTokens,
        FaultKind::status(401, r#"{"message":"Bad credentials"}"#),
    ));
    wait_until("the refused mint", Duration::from_secs(20), || {
        env.fake.pending_faults().is_empty()
    });
    n.wait_for("STATUS with the 401", Duration::from_secs(10), |l| {
        l.starts_with("STATUS=") && l.contains("401")
    });
    d.signal(Signal::TERM);
    let (_, out) = d.finish(Duration::from_secs(10));
    all += &out;
    all += &n.seen.join("\n");
    assert!(
        all.contains("TRACE") || all.contains("trace"),
        "trace logging was on"
    );
    assert!(
        env.secrets().len() >= 4,
        "once, check and three refreshes minted"
    );
    assert_no_secrets(&all, &env.secrets());
}

#[test]
fn an_http_api_url_needs_no_ca_certificates() {
    // A plain-http API URL (a local double, a loopback proxy) never uses TLS, so the system's
    // CA bundle is not loaded at all: not even a missing bundle stops it (and no start-up
    // time goes to parsing one). An https URL still needs the roots (a clear error, 78).
    let env = TestEnv::new();
    let no_certs = env.dir.path().join("no-such-bundle.pem");
    let mut c = env.cmd("once");
    c.args(["--installation-id", "100"])
        .env("SSL_CERT_FILE", &no_certs)
        .env("SSL_CERT_DIR", &no_certs);
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(env.fake.is_token_valid(env.read_file().token.expose()));

    let mut c = env.cmd("once");
    c.args([
        "--installation-id",
        "100",
        "--api-url",
        "https://127.0.0.1:9",
    ])
    .env("SSL_CERT_FILE", &no_certs)
    .env("SSL_CERT_DIR", &no_certs);
    let out = run(c);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("CA certificates"), "{}", text(&out));
}
