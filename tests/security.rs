//! The sandbox is untrusted (issue 10, docs/security.md): one test per class of attack, each
//! against the real binary and the fake GitHub, each failing on the code before the fix.
//! §1 files the daemon does not own at the token path, an output directory others can
//! write; §2 the network path (proxies, credentials in the API URL); §3 hostile data from
//! the server, the key process non-dumpable; §4 configuration that aliases or destroys.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use github_token_refresher::token_file;
use rustix::process::Signal;

fn mkfifo(path: &Path) {
    let _ = fs::remove_file(path);
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

fn out_dir(env: &TestEnv) -> PathBuf {
    let dir = env.output.parent().unwrap().to_owned();
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// Run `c` to its end, or fail the test when it takes longer than `limit`.
fn bounded(c: Command, limit: Duration) -> (i32, String) {
    let started = Instant::now();
    let (code, log) = Proc::spawn(c).finish(limit);
    let code = code.unwrap_or_else(|| panic!("still running after {limit:?}; output:\n{log}"));
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
    (code, log)
}

// --- §1 files the daemon does not own -------------------------------------------------

#[test]
fn a_fifo_or_a_device_at_the_token_path_never_hangs_or_exhausts_a_reader() {
    let env = TestEnv::new();
    out_dir(&env);
    let limit = Duration::from_secs(20);

    // status: "not a token file", exit 2, at once
    mkfifo(&env.output);
    let mut c = bare_cmd();
    c.arg("status").arg("--output").arg(&env.output);
    let (code, log) = bounded(c, Duration::from_secs(5));
    assert_eq!(code, 2, "{log}");
    assert!(
        log.contains("not a token file") && log.contains("FIFO"),
        "{log}"
    );

    // a link to /dev/zero: no endless read
    fs::remove_file(&env.output).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &env.output).unwrap();
    let mut c = bare_cmd();
    c.arg("status").arg("--output").arg(&env.output);
    let (code, log) = bounded(c, Duration::from_secs(5));
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("not a token file"), "{log}");
    // a consumer follows links (projected volumes) but reads a bounded regular file only
    let mut c = bare_cmd();
    c.arg("token").arg("--file").arg(&env.output);
    let (code, log) = bounded(c, Duration::from_secs(5));
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("not a token file: it is a device"), "{log}");

    // once replaces a FIFO by a token file
    mkfifo(&env.output);
    let mut c = env.cmd("once");
    c.args(["--installation-id", "100"]);
    let (code, log) = bounded(c, limit);
    assert_eq!(code, 0, "{log}");
    assert!(fs::symlink_metadata(&env.output).unwrap().is_file());
    env.read_file();

    // run, before READY (GitHub hangs), with a FIFO there: SIGTERM stops it within seconds
    mkfifo(&env.output);
    env.fake
        .push_fault(Fault::new(Route::AccessTokens, FaultKind::Hang, 100));
    let n = Notify::new(env.dir.path());
    let d = daemon(&env, &n, &["--installation-id", "100"]);
    d.wait_log("the start-up line", limit, |l| l.contains("started with"));
    d.wait_log("a warning about the FIFO", limit, |l| {
        l.contains("is not a token file: it is a FIFO; the next token replaces it")
    });
    let stopping = Instant::now();
    let (code, log) = d.stop(Duration::from_secs(3));
    assert_eq!(code, Some(0), "{log}");
    assert!(stopping.elapsed() < Duration::from_secs(3), "{log}");
}

#[test]
fn an_output_directory_others_can_write_or_own_is_refused() {
    let env = TestEnv::new();
    let dir = out_dir(&env);
    for mode in [0o777, 0o1777, 0o770] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
        let o = env.once(&["--installation-id", "100"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(78), "mode {mode:o}: {err}");
        assert!(
            err.contains(&format!("'{}'", dir.display())) && err.contains("chmod go-w"),
            "{err}"
        );
        assert!(!env.output.exists());
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    if rustix::process::geteuid().is_root() {
        // owned by another user (as root; a normal user cannot give a directory away)
        std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
        let o = env.once(&["--installation-id", "100"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(78), "{err}");
        assert!(err.contains("chown 0 "), "{err}");
        std::os::unix::fs::chown(&dir, Some(0), None).unwrap();
    }
    // a directory the daemon creates is 0700 whatever the umask
    fs::remove_dir(&dir).unwrap();
    let o = env.once(&["--installation-id", "100"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o7777, 0o700);
}

// --- §2 the network path ----------------------------------------------------------------

/// A CONNECT proxy on loopback: every tunnel goes to `upstream`, whatever host the client
/// asked for (so a name that resolves nowhere works only through the proxy). Records the
/// first line of every request it gets; answers anything but CONNECT with 502.
struct ConnectProxy {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl ConnectProxy {
    fn start(upstream: u16) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || tunnel(conn, upstream, &log));
            }
        });
        ConnectProxy { port, seen }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn tunnel(mut client: TcpStream, upstream: u16, log: &Mutex<Vec<String>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let first = text.lines().next().unwrap_or("").to_owned();
    log.lock().unwrap().push(first.clone());
    if !first.starts_with("CONNECT ") {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
        return;
    }
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
    let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut s2, &mut c2);
        let _ = c2.shutdown(std::net::Shutdown::Both);
    });
    let (mut c, mut s) = (client, server);
    let _ = std::io::copy(&mut c, &mut s);
    let _ = s.shutdown(std::net::Shutdown::Both);
}

const PROXY_VARS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// A test CA, a certificate for `api.github.test` and `tests/static/tls-proxy.py`
/// terminating TLS in front of the fake GitHub: (CA file, TLS port, the python child,
/// killed on drop).
fn tls_front(env: &TestEnv) -> (PathBuf, u16, KillOnDrop) {
    let pki = env.dir.path().join("pki");
    fs::create_dir_all(&pki).unwrap();
    // one command line each (no argument holds a space)
    let openssl = |line: &str| {
        let ok = Command::new("openssl")
            .args(line.split_whitespace())
            .current_dir(&pki)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs (apt-get install openssl)")
            .success();
        assert!(ok, "openssl {line}");
    };
    const EC: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    openssl(&format!(
        "req -x509 {EC} -keyout ca.key -out ca.pem -days 1 -subj /CN=security-test-ca \
         -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign"
    ));
    openssl(&format!(
        "req {EC} -keyout srv.key -out srv.csr -subj /CN=api.github.test"
    ));
    fs::write(
        pki.join("ext"),
        "subjectAltName=DNS:api.github.test\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n",
    )
    .unwrap();
    openssl(
        "x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 1 \
         -extfile ext",
    );
    let port_file = pki.join("port");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/static/tls-proxy.py");
    let child = KillOnDrop(
        Command::new("python3")
            .arg(script)
            .arg(pki.join("srv.pem"))
            .arg(pki.join("srv.key"))
            .arg(format!("127.0.0.1:{}", env.fake.port()))
            .arg(&port_file)
            .spawn()
            .expect("python3 runs"),
    );
    wait_until("the TLS front to listen", Duration::from_secs(10), || {
        fs::read_to_string(&port_file).is_ok_and(|s| !s.trim().is_empty())
    });
    let port = fs::read_to_string(&port_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (pki.join("ca.pem"), port, child)
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_loopback_api_never_goes_through_a_proxy_and_real_names_do() {
    let env = TestEnv::new();
    let proxy = ConnectProxy::start(env.fake.port());
    // every proxy variable set: the loopback fake is still reached directly
    let mut c = env.cmd("once");
    c.args(["--installation-id", "100"]);
    for v in PROXY_VARS {
        c.env(v, proxy.url());
    }
    c.env_remove("NO_PROXY").env_remove("no_proxy");
    let o = run(c);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(proxy.seen(), Vec::<String>::new(), "the proxy saw the JWT");

    // a name only the proxy can reach, over https: HTTPS_PROXY is honoured
    let (ca, tls_port, _front) = tls_front(&env);
    let proxy = ConnectProxy::start(tls_port);
    let mut c = env.cmd("once");
    c.args([
        "--installation-id",
        "100",
        "--api-url",
        "https://api.github.test",
    ]);
    c.env("HTTPS_PROXY", proxy.url())
        .env("SSL_CERT_FILE", &ca)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    let o = run(c);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let seen = proxy.seen();
    assert!(
        !seen.is_empty()
            && seen
                .iter()
                .all(|l| l.starts_with("CONNECT api.github.test:443")),
        "{seen:?}"
    );
    assert!(token_file::read(&env.output).is_ok());
}

#[test]
fn an_api_url_with_a_password_is_refused_and_never_echoed() {
    let env = TestEnv::new();
    for url in [
        format!("http://user:hunter2secret@127.0.0.1:{}", env.fake.port()),
        format!("http://:hunter2secret@127.0.0.1:{}", env.fake.port()),
        "https://x:hunter2secret@exa mple.com".to_string(),
    ] {
        let mut c = env.cmd("once");
        c.args(["--installation-id", "100", "--api-url", &url]);
        let o = run(c);
        let all = text(&o);
        assert_eq!(o.status.code(), Some(78), "{url}: {all}");
        assert!(!all.contains("hunter2secret"), "{all}");
    }
    assert_eq!(env.fake.mint_count(), 0);
}

// --- §3 data from the server is hostile too ---------------------------------------------

const FORGED: &str = "acme\n2027-01-01T00:00:00Z  INFO forged: all good\u{1b}[2J\u{1b}[31m";

#[test]
fn a_hostile_login_never_reaches_a_log_line_or_status_raw() {
    let env = TestEnv::new();
    env.fake.push_fault(Fault::new(
        Route::Installation,
        FaultKind::replace_field(
            "account",
            serde_json::json!({"login": FORGED, "type": "Organization"}),
        ),
        10,
    ));
    let o = env.once(&["--installation-id", "100"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(!out.contains("acme\n2027"), "{out:?}");
    let mut c = bare_cmd();
    c.arg("status").arg("--output").arg(&env.output);
    let o = run(c);
    let out = text(&o);
    assert!(
        !out.contains('\u{1b}') && !out.contains("acme\n"),
        "{out:?}"
    );
    assert!(out.contains("acme\\n2027"), "{out}");

    // a file written by someone else with the same text: status escapes it too
    let mut f = env.read_file();
    f.account = FORGED.into();
    fs::write(&env.output, serde_json::to_string(&f).unwrap()).unwrap();
    let mut c = bare_cmd();
    c.arg("status").arg("--output").arg(&env.output);
    let o = run(c);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        !out.contains('\u{1b}') && !out.contains("acme\n"),
        "{out:?}"
    );
}

#[test]
#[ignore = "slow: full tier only (cargo test --workspace --locked -- --include-ignored)"]
fn a_garbled_token_or_expiry_is_retried_and_the_old_file_kept() {
    let env = TestEnv::new();
    assert_eq!(
        env.once(&["--installation-id", "100"]).status.code(),
        Some(0)
    );
    let good = env.read_file();
    let garbled = [
        (
            "token",
            serde_json::json!("ghs_\u{e9}\u{e9}visible-but-not-ascii"),
        ),
        (
            "token",
            serde_json::json!(format!("ghs_{}", "a".repeat(5000))),
        ),
        ("expires_at", serde_json::json!("2020-01-01T00:00:00Z")),
        ("expires_at", serde_json::json!("2099-01-01T00:00:00Z")),
    ];
    for (field, value) in garbled {
        env.fake.clear_faults();
        env.fake.push_fault(Fault::new(
            Route::AccessTokens,
            FaultKind::replace_field(field, value.clone()),
            100,
        ));
        let before = env.fake.mint_count();
        let o = env.once(&["--installation-id", "100"]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(69), "{field}={value}: {out}");
        assert!(env.fake.mint_count() - before >= 2, "retried: {out}");
        assert!(
            out.contains("unusable answer") || out.contains("unusable"),
            "{out}"
        );
        let now = env.read_file();
        assert_eq!(now.token, good.token, "{field}: the old file stays");
        assert_eq!(now.generation, good.generation);
    }
    env.fake.clear_faults();

    // consumers apply the same rule to a file someone else wrote
    for token in [
        "ghs_\u{e9}x".to_string(),
        format!("ghs_{}", "a".repeat(5000)),
    ] {
        let mut f = good.clone();
        f.token = github_token_refresher::secret::Secret::new(token);
        fs::write(&env.output, serde_json::to_string(&f).unwrap()).unwrap();
        let mut c = bare_cmd();
        c.arg("token").arg("--file").arg(&env.output);
        let o = run(c);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(o.stdout.is_empty());
    }
}

#[test]
#[ignore = "slow: full tier only (cargo test --workspace --locked -- --include-ignored)"]
fn once_and_check_are_non_dumpable_before_they_read_the_key() {
    let env = TestEnv::new();
    // /proc/PID/* of a non-dumpable process belongs to root; run the child as another uid
    // so that a dumpable one would show its own
    let as_root = rustix::process::geteuid().is_root();
    let uid = if as_root {
        65534
    } else {
        rustix::process::geteuid().as_raw()
    };
    if as_root {
        for p in [env.dir.path(), env.key.as_path()] {
            std::os::unix::fs::chown(p, Some(uid), Some(uid)).unwrap();
        }
    }
    for sub in ["once", "check"] {
        env.fake.clear_faults();
        env.fake.push_fault(Fault::new(
            Route::Any,
            FaultKind::Delay(Duration::from_secs(2)),
            100,
        ));
        let mut c = env.cmd(sub);
        c.args(["--installation-id", "100"]);
        if as_root {
            c.uid(uid).gid(uid);
        }
        let p = Proc::spawn(c);
        let status = PathBuf::from(format!("/proc/{}/status", p.pid()));
        wait_until("the request to GitHub", Duration::from_secs(10), || {
            !env.fake.requests().is_empty()
        });
        let owner = fs::metadata(&status).unwrap().uid();
        let (_, log) = p.finish(Duration::from_secs(30));
        assert_eq!(
            owner, 0,
            "{sub}: /proc/PID/status belongs to {owner}: {log}"
        );
        env.fake.clear_requests();
    }
}

// --- §4 configuration that aliases or destroys -----------------------------------------

/// [`write_targets_toml`] with `body`, every target in it for installation 100.
fn config(env: &TestEnv, body: &str) -> PathBuf {
    write_targets_toml(
        env,
        &body.replace("[[target]]\n", "[[target]]\ninstallation_id = 100\n"),
    )
}

fn once_config(path: &Path) -> (i32, String) {
    let mut c = bare_cmd();
    c.arg("once").arg("--config").arg(path);
    let o = run(c);
    (o.status.code().unwrap_or(-1), text(&o))
}

#[test]
fn configurations_that_alias_outputs_or_share_tokens_are_refused() {
    let env = TestEnv::new();
    let d = env.dir.path().display().to_string();
    let cases = [
        (
            format!(
                "[[target]]\nname = \"a\"\noutput = \"{d}/a/token.json\"\n\
                 [[target]]\nname = \"b\"\noutput = \"{d}/b/../a/token.json\"\n"
            ),
            "both write",
        ),
        (
            format!("[[target]]\nname = \"..\"\noutput = \"{d}/x/token.json\"\n"),
            "target name",
        ),
        (
            format!("[[target]]\nname = \".\"\noutput = \"{d}/x/token.json\"\n"),
            "target name",
        ),
        (
            format!("[[target]]\nname = \"a\"\noutput = \"{d}/x/token.json\"\nmode = \"0640\"\n"),
            "no group is set",
        ),
        (
            format!(
                "[[target]]\nname = \"a\"\noutput = \"{d}/x/token.json\"\nmode = \"0660\"\ngroup = 0\n"
            ),
            "mode",
        ),
    ];
    for (body, expect) in cases {
        let (code, out) = once_config(&config(&env, &body));
        assert_eq!(code, 78, "{body}: {out}");
        assert!(out.contains(expect), "{body}: {out}");
    }
    // a directory reached by a symbolic link is the same directory
    fs::create_dir_all(env.dir.path().join("real")).unwrap();
    std::os::unix::fs::symlink(env.dir.path().join("real"), env.dir.path().join("link")).unwrap();
    let body = format!(
        "[[target]]\nname = \"a\"\noutput = \"{d}/real/token.json\"\n\
         [[target]]\nname = \"b\"\noutput = \"{d}/link/token.json\"\n"
    );
    let (code, out) = once_config(&config(&env, &body));
    assert_eq!(code, 78, "{out}");
    assert!(out.contains("both write"), "{out}");
    assert_eq!(env.fake.mint_count(), 0);
}

#[test]
fn delete_removed_outputs_spares_current_files_and_anything_not_a_token_file() {
    let env = TestEnv::new();
    let d = env.dir.path().display().to_string();
    let extra = "delete_removed_outputs = true\nrefresh_interval = \"30m\"\n";
    let path = config(
        &env,
        &format!(
            "{extra}[[target]]\nname = \"old\"\noutput = \"{d}/a/token.json\"\n\
             [[target]]\nname = \"junk\"\noutput = \"{d}/j/token.json\"\n"
        ),
    );
    let (mut n, p, _) = daemon_config_ready(&env, &path);
    // the sandbox swaps a removed target's file for something else of the host's
    let junk = env.dir.path().join("j/token.json");
    fs::remove_file(&junk).unwrap();
    fs::write(&junk, "not a token, but somebody's data").unwrap();
    // the new configuration: another name for the same file, and `junk` removed
    config(
        &env,
        &format!("{extra}[[target]]\nname = \"new\"\noutput = \"{d}/b/../a/token.json\"\n"),
    );
    p.signal(Signal::HUP);
    n.wait_for("READY=1 after the reload", Duration::from_secs(10), |l| {
        l.starts_with("READY=1")
    });
    p.wait_log("the reload", Duration::from_secs(10), |l| {
        l.contains("configuration reloaded")
    });
    let (_, log) = p.stop(Duration::from_secs(5));
    assert!(
        token_file::read(&env.dir.path().join("a/token.json")).is_ok(),
        "the file target 'new' writes was deleted: {log}"
    );
    assert_eq!(
        fs::read_to_string(&junk).unwrap(),
        "not a token, but somebody's data",
        "{log}"
    );
    assert!(log.contains("not deleting"), "{log}");
}

#[test]
fn a_file_from_the_sandbox_cannot_postpone_the_first_mint_or_overflow_the_generation() {
    let env = TestEnv::new();
    let d = env.dir.path().display().to_string();
    let path = config(
        &env,
        &format!(
            "refresh_interval = \"30m\"\n[[target]]\nname = \"a\"\noutput = \"{d}/a/token.json\"\n"
        ),
    );
    let file = env.dir.path().join("a/token.json");
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::set_permissions(file.parent().unwrap(), fs::Permissions::from_mode(0o700)).unwrap();
    // "valid" for 73 years, a refresh planned in 72, the last generation there is
    let forged = serde_json::json!({
        "token": "ghs_forgedbythesandbox",
        "expires_at": "2099-01-01T00:00:00Z",
        "expires_at_unix": 4_070_908_800i64,
        "refresh_at": "2098-01-01T00:00:00Z",
        "refresh_at_unix": 4_039_372_800i64,
        "app_id": env.fake.app().id.to_string(),
        "generation": u64::MAX,
    });
    fs::write(&file, forged.to_string()).unwrap();
    let (_n, p, _) = daemon_config_ready(&env, &path);
    wait_until(
        "a real token replaces the forged one",
        Duration::from_secs(10),
        || token_file::read(&file).is_ok_and(|f| f.token.expose() != "ghs_forgedbythesandbox"),
    );
    let (_, log) = p.stop(Duration::from_secs(5));
    let now = token_file::read(&file).unwrap();
    assert_eq!(now.generation, u64::MAX, "{log}");
    assert!(log.contains("not adopting"), "{log}");
}
