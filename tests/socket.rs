//! Pull mode against the fake GitHub: the real daemon serving a Unix socket, asked the way
//! a sandbox asks (`curl --unix-socket`-style HTTP/1.1): the target's token, narrowed
//! tokens, requests broader than the target, malformed and slow clients, many clients,
//! the audit line, lazy minting and eviction, and stop.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use github_token_refresher::token_file::TokenFile;

/// One raw request; the status and the body.
fn raw(sock: &Path, request: &[u8]) -> (u16, String) {
    let mut s = UnixStream::connect(sock).expect("the socket accepts");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("an answer");
    parse_response(&out)
}

fn parse_response(out: &str) -> (u16, String) {
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {out:?}"));
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_owned())
}

fn get(sock: &Path, path: &str) -> (u16, String) {
    raw(
        sock,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n").as_bytes(),
    )
}

/// The status of `GET path`, or None when the connection fails or is reset.
fn try_get(sock: &Path, path: &str) -> Option<u16> {
    let mut s = UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(parse_response(&out).0)
}

fn token_of(body: &str) -> TokenFile {
    TokenFile::parse(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

struct Pull {
    env: TestEnv,
    sock: PathBuf,
    proc: Proc,
}

/// `sub` for the standard App and installation 100 serving `sock`, without `--output`.
fn socket_cmd(env: &TestEnv, sub: &str, sock: &Path) -> Command {
    let mut c = bare_cmd();
    c.arg(sub)
        .args(["--app-id", &env.fake.app().id.to_string()])
        .arg("--private-key-file")
        .arg(&env.key)
        .args(["--api-url", &env.fake.url()])
        .args(["--installation-id", "100"])
        .arg("--socket")
        .arg(sock);
    c
}

/// `run` with `--socket` (and the standard App flags, no `--output` unless in `extra`).
fn start(extra: &[&str]) -> Pull {
    start_with(TestEnv::new(), extra)
}

fn start_with(env: TestEnv, extra: &[&str]) -> Pull {
    let sock = env.dir.path().join("run").join("token.sock");
    let mut c = socket_cmd(&env, "run", &sock);
    c.args(extra);
    let proc = Proc::spawn(c);
    proc.wait_log("the socket", Duration::from_secs(20), |l| {
        l.contains("serving tokens on")
    });
    Pull { env, sock, proc }
}

#[test]
fn a_socket_only_target_mints_on_first_request_and_serves_the_token_file_json() {
    let p = start(&[]);
    let mode = std::fs::metadata(&p.sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the socket is the owner's alone");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(p.env.fake.mint_count(), 0, "nobody asked: no token");

    let (status, body) = get(&p.sock, "/healthz");
    assert_eq!((status, body.trim()), (200, "{\"status\":\"ok\"}"));
    assert_eq!(p.env.fake.mint_count(), 0, "a health check mints nothing");

    let (status, body) = get(&p.sock, "/token");
    assert_eq!(status, 200, "{body}");
    let file = token_of(&body);
    assert!(p.env.fake.is_token_valid(file.token.expose()));
    assert_eq!(file.installation_id, 100);
    assert_eq!(file.account, "acme");
    assert!(!file.fingerprint.is_empty());
    assert!(
        !p.env.output.exists(),
        "a socket-only target writes no file"
    );
    // cached: the next ones are the same token, minted once
    for _ in 0..5 {
        let (_, again) = get(&p.sock, "/token");
        assert_eq!(token_of(&again).token, file.token);
    }
    assert_eq!(p.env.fake.mint_count(), 1);
    // curl's absolute form works too
    let (status, _) = get(&p.sock, "http://localhost/token");
    assert_eq!(status, 200);
    let (code, log) = p.proc.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    assert!(!p.sock.exists(), "the socket is removed at stop");
    assert!(
        !p.env.fake.is_token_valid(file.token.expose()),
        "a token minted for the socket is revoked at stop"
    );
    assert_no_secrets(&log, &p.env.secrets());
}

#[test]
fn with_a_file_the_socket_serves_the_files_token() {
    let env = TestEnv::new();
    let out = env.output.clone();
    let p = start_with(env, &["--output", out.to_str().unwrap()]);
    wait_until("the file", Duration::from_secs(20), || out.exists());
    let (status, body) = get(&p.sock, "/token");
    assert_eq!(status, 200, "{body}");
    let file = p.env.read_file();
    assert_eq!(token_of(&body), file, "the very same JSON as the file");
    assert_eq!(p.env.fake.mint_count(), 1);
    let (code, log) = p.proc.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    assert!(
        p.env.fake.is_token_valid(file.token.expose()),
        "the file's token lives on as without a socket"
    );
}

#[test]
fn narrowed_tokens_are_minted_per_scope_cached_and_never_broader_than_the_target() {
    let p = start(&[
        "--repositories",
        "widgets,gadgets",
        "--permissions",
        "contents=write,issues=read",
    ]);
    let (status, body) = get(
        &p.sock,
        "/token?repositories=widgets&permissions=contents:read",
    );
    assert_eq!(status, 200, "{body}");
    let narrowed = token_of(&body);
    let minted = p.env.fake.last_token().unwrap();
    assert_eq!(minted.token, narrowed.token.expose());
    assert_eq!(minted.repositories, Some(vec!["widgets".to_string()]));
    assert_eq!(
        minted.permissions.into_iter().collect::<Vec<_>>(),
        vec![("contents".to_string(), "read".to_string())]
    );
    assert_eq!(narrowed.repositories, Some(vec!["widgets".to_string()]));
    // the same scope, spelled differently: the same cached token
    let (_, again) = get(
        &p.sock,
        "/token?permissions=contents%3Aread&repositories=widgets",
    );
    assert_eq!(token_of(&again).token, narrowed.token);
    // the target's own scope is another token
    let (_, full) = get(&p.sock, "/token");
    assert_ne!(token_of(&full).token, narrowed.token);
    assert_eq!(p.env.fake.mint_count(), 2);

    for (query, says) in [
        ("repositories=infra", "outside this socket's scope"),
        ("permissions=contents:admin", "broader than"),
        (
            "permissions=pull_requests:read",
            "not in this socket's scope",
        ),
    ] {
        let (status, body) = get(&p.sock, &format!("/token?{query}"));
        assert_eq!(status, 403, "{query}: {body}");
        assert!(body.contains(says), "{query}: {body}");
    }
    assert_eq!(
        p.env.fake.mint_count(),
        2,
        "nothing broader was asked of GitHub"
    );
    let (code, log) = p.proc.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(!p.env.fake.is_token_valid(narrowed.token.expose()));
    assert_no_secrets(&log, &p.env.secrets());
}

#[test]
fn github_refusing_a_scope_is_a_403_with_its_reason() {
    // an unrestricted target: the scope check is GitHub's
    let p = start(&[]);
    let (status, body) = get(&p.sock, "/token?repositories=not-installed");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("cannot mint"), "{body}");
    let (status, _) = get(&p.sock, "/token");
    assert_eq!(status, 200, "one refused scope spoils nothing");
}

#[test]
fn malformed_requests_get_a_clear_status() {
    let p = start(&[]);
    let cases: &[(&[u8], u16)] = &[
        (b"POST /token HTTP/1.1\r\n\r\n", 405),
        (b"GET /nope HTTP/1.1\r\n\r\n", 404),
        (b"GET /token?repo=x HTTP/1.1\r\n\r\n", 400),
        (b"GET /token?permissions=contents HTTP/1.1\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n\r\n", 400),
        (b"GET /token HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody", 400),
        (b"hello\n\n", 400),
    ];
    for (req, want) in cases {
        let (status, body) = raw(&p.sock, req);
        assert_eq!(status, *want, "{:?}: {body}", String::from_utf8_lossy(req));
        assert!(body.contains("\"error\""), "{body}");
    }
    let many = format!("GET /token HTTP/1.1\r\n{}\r\n", "X-Pad: a\r\n".repeat(100));
    assert_eq!(raw(&p.sock, many.as_bytes()).0, 431);
    let long = format!(
        "GET /token HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let mut s = UnixStream::connect(&p.sock).unwrap();
    let _ = s.write_all(long.as_bytes()); // the server may close before reading it all
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert_eq!(parse_response(&out).0, 431);
    assert_eq!(p.env.fake.mint_count(), 0, "no malformed request minted");
    assert_eq!(get(&p.sock, "/token").0, 200);
}

#[test]
fn a_slow_client_gets_408_and_stalls_nobody() {
    let p = start(&[]);
    let mut slow = UnixStream::connect(&p.sock).unwrap();
    slow.write_all(b"GET /tok").unwrap();
    let began = Instant::now();
    for _ in 0..10 {
        assert_eq!(get(&p.sock, "/token").0, 200);
    }
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "other clients are served while one dawdles: {:?}",
        began.elapsed()
    );
    slow.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut out = String::new();
    slow.read_to_string(&mut out).unwrap();
    assert_eq!(parse_response(&out).0, 408);
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
}

#[test]
fn many_clients_are_served_and_connections_beyond_the_cap_are_refused_at_once() {
    let p = start(&[]);
    assert_eq!(get(&p.sock, "/token").0, 200);
    // 16 clients × 25 requests at once
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| s.spawn(|| (0..25).filter(|_| get(&p.sock, "/token").0 == 200).count()))
            .collect();
        let ok: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(ok, 400);
    });
    assert_eq!(p.env.fake.mint_count(), 1);
    // hold every slot with a silent connection: the next one is told 503 at once
    let idle: Vec<UnixStream> = (0..github_token_refresher::pull::MAX_CONNECTIONS)
        .map(|_| UnixStream::connect(&p.sock).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let began = Instant::now();
    // the refusal comes on accept, before any request is read
    let mut s = UnixStream::connect(&p.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (status, body) = parse_response(&out);
    assert_eq!(status, 503, "{body}");
    assert!(began.elapsed() < Duration::from_secs(2));
    drop(idle);
    // until the server has seen the idle connections close, a request may still be refused
    // at accept (a 503, or a reset when the refusal closes before reading the request)
    wait_until("a free slot", Duration::from_secs(5), || {
        try_get(&p.sock, "/token") == Some(200)
    });
}

#[test]
fn every_answer_is_audited_with_the_peers_credentials_scope_and_fingerprint() {
    let p = start(&[]);
    let (_, body) = get(&p.sock, "/token?repositories=widgets");
    let fp = token_of(&body).fingerprint;
    assert_eq!(get(&p.sock, "/token?repositories=infra&x=1").0, 400);
    let me = std::process::id();
    let uid = rustix::process::getuid().as_raw();
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let cgroup = cgroup
        .lines()
        .last()
        .unwrap()
        .splitn(3, ':')
        .nth(2)
        .unwrap()
        .to_owned();
    p.proc
        .wait_log("the audit lines", Duration::from_secs(5), |l| {
            l.matches("socket answer").count() >= 2
        });
    let log = p.proc.log();
    let ok = log
        .lines()
        .find(|l| l.contains("socket answer") && l.contains("status=200"))
        .unwrap();
    for want in [
        format!("pid={me}"),
        format!("uid={uid}"),
        format!("fingerprint={fp}"),
        "scope=repositories=widgets".to_string(),
        format!("cgroup={cgroup}"),
        "path=/token".to_string(),
    ] {
        assert!(ok.contains(&want), "{want} missing in: {ok}");
    }
    let refused = log
        .lines()
        .find(|l| l.contains("socket answer") && l.contains("status=400"))
        .unwrap();
    assert!(refused.contains(&format!("pid={me}")), "{refused}");
    assert!(refused.contains("unknown parameter"), "{refused}");
    let (_, log) = p.proc.stop(Duration::from_secs(10));
    assert_no_secrets(&log, &p.env.secrets());
}

#[test]
fn tokens_stay_fresh_while_asked_for_and_are_dropped_and_revoked_when_not() {
    // FAST repeats start's --installation-id 100 (the last of a flag given twice counts)
    let p = start(FAST);
    let (_, body) = get(&p.sock, "/token?repositories=widgets");
    let first = token_of(&body);
    // asked for every 200 ms for 3.5 s: refreshed on the target's schedule
    let until = Instant::now() + Duration::from_millis(3500);
    let mut seen = vec![first.token.clone()];
    while Instant::now() < until {
        let (status, body) = get(&p.sock, "/token?repositories=widgets");
        assert_eq!(status, 200);
        let t = token_of(&body).token;
        assert!(p.env.fake.is_token_valid(t.expose()));
        if !seen.contains(&t) {
            seen.push(t);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        seen.len() >= 2,
        "refreshed while asked for: {} token(s)",
        seen.len()
    );
    // nobody asks: the token asked for last is refreshed once more (it was asked for since
    // its mint), then that one, asked for by nobody, is dropped and revoked
    wait_until("the unasked token revoked", Duration::from_secs(10), || {
        let last = p.env.fake.last_token().unwrap();
        !seen.iter().any(|t| t.expose() == last.token) && !p.env.fake.is_token_valid(&last.token)
    });
    let minted = p.env.fake.mint_count();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        p.env.fake.mint_count(),
        minted,
        "nobody asks: nothing is minted"
    );
    p.proc
        .wait_log("the eviction", Duration::from_secs(5), |l| {
            l.contains("not asked for since it was minted")
        });
}

#[test]
fn an_unsafe_socket_directory_or_path_is_a_configuration_error() {
    let env = TestEnv::new();
    let shared = env.dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let plain = env.dir.path().join("plain");
    std::fs::write(&plain, "x").unwrap();
    for (sock, says) in [
        (shared.join("t.sock"), "is writable by"),
        (plain.clone(), "not a socket"),
    ] {
        let out = run(socket_cmd(&env, "run", &sock));
        let err = text(&out);
        assert_eq!(out.status.code(), Some(78), "{err}");
        assert!(err.contains(says), "{err}");
        assert!(err.contains(sock.to_str().unwrap()), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&plain).unwrap(), "x", "left alone");
}

#[test]
fn consumers_ask_the_socket() {
    let p = start(&["--repositories", "widgets,gadgets"]);
    // token, by flag and by GITHUB_TOKEN_SOCKET
    let mut c = bare_cmd();
    c.arg("token").arg("--socket").arg(&p.sock);
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(p.env.fake.is_token_valid(printed.trim()));
    let mut c = bare_cmd();
    c.arg("token").env("GITHUB_TOKEN_SOCKET", &p.sock);
    let out = run(c);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), printed, "cached");

    // exec
    let mut c = bare_cmd();
    c.args(["exec", "--socket"])
        .arg(&p.sock)
        .args(["--", "sh", "-c", "printf %s \"$GH_TOKEN\""]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), printed.trim());

    // git-credential with useHttpPath: a token narrowed to the repository git names
    let ask = |path: &str| {
        let mut c = bare_cmd();
        c.args(["git-credential", "--socket"])
            .arg(&p.sock)
            .arg("get");
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(
                format!(
                    "protocol=https\nhost=127.0.0.1:{}\npath={path}\n\n",
                    p.env.fake.port()
                )
                .as_bytes(),
            )
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = ask("acme/gadgets.git");
    let answer = String::from_utf8(out.stdout).unwrap();
    let password = answer
        .lines()
        .find_map(|l| l.strip_prefix("password="))
        .unwrap_or_else(|| {
            panic!(
                "no password: {answer} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let minted = p
        .env
        .fake
        .tokens()
        .into_iter()
        .find(|t| t.token == password)
        .unwrap();
    assert_eq!(minted.repositories, Some(vec!["gadgets".to_string()]));
    // a repository outside the socket's scope: no password, and git is told why
    let out = ask("acme/infra.git");
    assert!(!String::from_utf8(out.stdout).unwrap().contains("password="));
    assert!(String::from_utf8(out.stderr).unwrap().contains("outside"));
}

#[test]
fn watch_over_the_socket_runs_the_hook_for_each_new_token_and_survives_the_daemon() {
    let p = start(&[
        "--refresh-interval",
        "2s",
        "--jitter",
        "0s",
        "--min-remaining",
        "1s",
    ]);
    let hooked = p.env.dir.path().join("hooked");
    let mut c = bare_cmd();
    c.args(["watch", "--socket"])
        .arg(&p.sock)
        .args(["--poll", "300ms", "--exec"])
        .arg(format!(
            "printf '%s %s\\n' \"$GH_TOKEN\" \"$GITHUB_TOKEN_EXPIRES_AT\" >>'{}'",
            hooked.display()
        ));
    let w = Proc::spawn(c);
    // a poll that would hammer the daemon is a usage error
    let mut c = bare_cmd();
    c.args(["watch", "--socket"])
        .arg(&p.sock)
        .args(["--poll", "0s", "--exec", "true"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("--poll"), "{}", text(&out));
    let lines = || -> Vec<String> {
        std::fs::read_to_string(&hooked)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    wait_until("three tokens hooked", Duration::from_secs(20), || {
        lines().len() >= 3
    });
    let seen = lines();
    let minted = p.env.fake.tokens();
    for (i, line) in seen.iter().enumerate() {
        let (token, expires) = line.split_once(' ').unwrap();
        let m = minted
            .iter()
            .find(|m| m.token == token)
            .unwrap_or_else(|| panic!("hook {i} got a token the fake never minted"));
        assert!(!expires.is_empty(), "{line}");
        assert!(m.repositories.is_none(), "the target's own scope");
        if i > 0 {
            assert_ne!(seen[i - 1], *line, "the hook runs once per new token");
        }
    }
    assert!(w.log().contains("watch: new token"), "{}", w.log());

    // the daemon goes away: watch says so once and keeps asking
    let (code, _) = p.proc.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    w.wait_log("the missing socket", Duration::from_secs(5), |l| {
        l.contains(p.sock.to_str().unwrap())
    });
    std::thread::sleep(Duration::from_secs(1));
    let mut w = w;
    assert_eq!(w.exited(), None, "watch keeps running without its daemon");
    let (_, log) = w.stop(Duration::from_secs(5));
    assert_eq!(
        log.matches(p.sock.to_str().unwrap()).count(),
        1,
        "said once, not at every poll: {log}"
    );
    assert_no_secrets(&log, &p.env.secrets());
}

#[test]
fn once_refuses_a_socket_only_target_clearly() {
    let env = TestEnv::new();
    let out = run(socket_cmd(&env, "once", &env.dir.path().join("t.sock")));
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("give it --output"), "{}", text(&out));
    assert_eq!(env.fake.mint_count(), 0);
}

/// `systemd-socket-activate` (systemd's own tool, which passes sockets exactly as a
/// `.socket` unit does), or None with a note where systemd is not installed; CI has it.
fn socket_activate() -> Option<std::process::Command> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("systemd-socket-activate"))
            .find(|f| f.is_file())
    });
    match found {
        Some(f) => Some(std::process::Command::new(f)),
        None if std::env::var_os("CI").is_some() => {
            panic!("CI needs systemd-socket-activate (apt-get install systemd)")
        }
        None => {
            eprintln!("skipped: no systemd-socket-activate on this machine");
            None
        }
    }
}

/// The daemon behind `systemd-socket-activate -l LISTEN --fdname=NAME`, serving `--socket
/// sock`: it starts on the first connection to LISTEN.
fn activated(env: &TestEnv, listen: &Path, fdname: &str, sock: &Path) -> Option<Proc> {
    let mut c = socket_activate()?;
    c.arg("-l")
        .arg(listen)
        .arg(format!("--fdname={fdname}"))
        .args(["-E", "RUST_LOG=debug", "--", BIN, "run"])
        .args(["--app-id", &env.fake.app().id.to_string()])
        .arg("--private-key-file")
        .arg(&env.key)
        .args(["--api-url", &env.fake.url(), "--installation-id", "100"])
        .arg("--socket")
        .arg(sock)
        .stdin(std::process::Stdio::null());
    let proc = Proc::spawn(c);
    proc.wait_log(
        "systemd-socket-activate listening",
        Duration::from_secs(10),
        |l| l.contains("Listening on"),
    );
    Some(proc)
}

#[test]
fn socket_activation_the_first_connection_starts_the_daemon_and_is_answered() {
    let env = TestEnv::new();
    let dir = env.dir.path().join("run");
    std::fs::create_dir(&dir).unwrap();
    let sock = dir.join("token.sock");
    // matched by path: systemd-socket-activate's name is not the target's ("default")
    let Some(p) = activated(&env, &sock, "pull.socket", &sock) else {
        return;
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !p.log().contains("serving tokens"),
        "nobody connected: not started"
    );
    assert_eq!(env.fake.mint_count(), 0);
    let (status, body) = get(&sock, "/token");
    assert_eq!(status, 200, "{body}\n{}", p.log());
    assert!(env.fake.is_token_valid(token_of(&body).token.expose()));
    let (status, _) = get(&sock, "/healthz");
    assert_eq!(status, 200);
    p.wait_log("the adopted socket", Duration::from_secs(5), |l| {
        l.contains("socket from systemd")
    });
    let (code, log) = p.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    assert!(
        std::fs::symlink_metadata(&sock).is_ok(),
        "systemd's socket is never removed by the daemon"
    );
    assert_no_secrets(&log, &env.secrets());
}

#[test]
fn socket_activation_matches_by_name_and_refuses_a_socket_no_target_names() {
    let env = TestEnv::new();
    let dir = env.dir.path().join("run");
    std::fs::create_dir(&dir).unwrap();
    let configured = dir.join("token.sock");
    let other = dir.join("other.sock");
    // the name "default" is the single target's: served, though its path differs
    let Some(p) = activated(&env, &other, "default", &configured) else {
        return;
    };
    let (status, body) = get(&other, "/token");
    assert_eq!(status, 200, "{body}");
    assert!(!configured.exists(), "nothing bound at the configured path");
    let (code, log) = p.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("not on its configured"), "{log}");

    // neither the name nor the path is a target's: exit 78, naming both
    std::fs::remove_file(&other).unwrap();
    let p = activated(&env, &other, "agent-9", &configured).unwrap();
    let _ = UnixStream::connect(&other).map(|mut s| s.write_all(b"GET /token HTTP/1.1\r\n\r\n"));
    let (code, log) = p.finish(Duration::from_secs(10));
    assert_eq!(code, Some(78), "{log}");
    assert!(
        log.contains("name 'agent-9'") && log.contains("matches no target"),
        "{log}"
    );
    assert!(log.contains(other.to_str().unwrap()), "{log}");
}

#[test]
fn a_sighup_adds_removes_and_rescopes_bound_sockets_and_keeps_the_rest() {
    let env = TestEnv::new();
    let run = env.dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    let sock = |name: &str| run.join(name).join("token.sock");
    let target = |name: &str, repos: &str| {
        format!(
            "[[target]]\nname = \"{name}\"\ninstallation_id = 100\nrepositories = [{repos}]\nsocket = \"{}\"\n",
            sock(name).display()
        )
    };
    let write = |targets: &[String]| write_targets_toml(&env, &targets.concat());
    let config = write(&[
        target("keep", "\"widgets\""),
        target("gone", "\"widgets\""),
        target("rescoped", "\"widgets\""),
    ]);
    let (_n, d, _) = daemon_config_ready(&env, &config);
    let (_, kept) = get(&sock("keep"), "/token");
    let kept = token_of(&kept).token;
    let (_, gone) = get(&sock("gone"), "/token");
    let gone = token_of(&gone).token;
    let (status, _) = get(&sock("rescoped"), "/token?repositories=gadgets");
    assert_eq!(
        status, 403,
        "gadgets is outside the target's scope before the reload"
    );
    let mints = env.fake.mint_count();

    write(&[
        target("keep", "\"widgets\""),
        target("rescoped", "\"widgets\", \"gadgets\""),
        target("new", "\"gadgets\""),
    ]);
    d.signal(rustix::process::Signal::HUP);
    d.wait_log("the sockets' reload", Duration::from_secs(10), |l| {
        l.contains("SIGHUP: sockets:")
    });
    assert!(
        d.log().contains("2 started, 2 stopped, 3 served"),
        "{}",
        d.log()
    );
    assert!(
        !sock("gone").exists(),
        "a removed target's socket is removed"
    );
    wait_until(
        "the removed socket's token revoked",
        Duration::from_secs(10),
        || !env.fake.is_token_valid(gone.expose()),
    );
    let (status, again) = get(&sock("keep"), "/token");
    assert_eq!(status, 200);
    assert_eq!(
        token_of(&again).token,
        kept,
        "an unchanged socket keeps its cache"
    );
    assert_eq!(env.fake.mint_count(), mints, "nothing minted for it");
    let (status, body) = get(&sock("rescoped"), "/token?repositories=gadgets");
    assert_eq!(status, 200, "the new scope is served: {body}");
    let (status, body) = get(&sock("new"), "/token");
    assert_eq!(status, 200, "{body}");
    assert!(env.fake.is_token_valid(token_of(&body).token.expose()));
    let mode = std::fs::metadata(sock("new")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (code, log) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    assert_no_secrets(&log, &env.secrets());
}
