//! Test support shared by the integration tests: a fake GitHub, a throwaway key and output
//! directory, the real binary with a clean environment, an sd_notify listener, a process
//! whose output is drained while it runs (trace logs would fill a pipe and block it), the
//! daemon started and waited for (READY=1) from flags or from the one `targets.toml`
//! fixture, leak checks, and for the reliability suites (`faults`, `host_faults`, `soak`,
//! `config_mistakes`) a watcher that re-reads token files as fast as it can and records
//! anything a consumer must never see, and timings taken from the fake GitHub's request log.

#![allow(dead_code, unused_imports)]

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{JoinHandle, Scope, ScopedJoinHandle};
use std::time::{Duration, Instant, SystemTime};

pub use fake_github::{FakeConfig, FakeGithub, Fault, FaultKind, Route};
use github_token_refresher::token_file::{self, TokenFile};

pub const BIN: &str = env!("CARGO_BIN_EXE_github-token-refresher");

/// Variables the binary reads; tests start from none of them set.
const OUR_VARS: &[&str] = &[
    "GITHUB_APP_ID",
    "GITHUB_APP_PRIVATE_KEY_FILE",
    "GITHUB_APP_INSTALLATION_ID",
    "GITHUB_APP_OWNER",
    "GITHUB_APP_REPO",
    "GITHUB_TOKEN_REPOSITORIES",
    "GITHUB_TOKEN_PERMISSIONS",
    "GITHUB_TOKEN_FILE",
    "GITHUB_TOKEN_SOCKET",
    "GITHUB_API_URL",
    "GITHUB_TOKEN_REFRESH_INTERVAL",
    "GITHUB_TOKEN_REFRESH_JITTER",
    "GITHUB_TOKEN_MIN_REMAINING",
    "GITHUB_HTTP_TIMEOUT",
    "GITHUB_TOKEN_REFRESHER_CONFIG",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "CREDENTIALS_DIRECTORY",
    "JOURNAL_STREAM",
];

/// Flags for a daemon that refreshes every second, as the fault tests want.
pub const FAST: &[&str] = &[
    "--installation-id",
    "100",
    "--refresh-interval",
    "1s",
    "--jitter",
    "0s",
    "--min-remaining",
    "1s",
];

/// What systemd sets for a service whose stderr goes to the journal.
pub const UNDER_SYSTEMD: &[(&str, &str)] = &[("JOURNAL_STREAM", "8:424242")];

pub struct TestEnv {
    pub fake: FakeGithub,
    pub dir: tempfile::TempDir,
    pub key: PathBuf,
    pub output: PathBuf,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        TestEnv::with_config(FakeConfig::standard())
    }

    pub fn with_config(config: FakeConfig) -> TestEnv {
        let fake = FakeGithub::start_blocking("127.0.0.1:0".parse().unwrap(), config)
            .expect("fake GitHub starts");
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("app.pem");
        write_key(&key, &fake.app().key.pkcs1_pem);
        let output = dir.path().join("out").join("token.json");
        TestEnv {
            fake,
            dir,
            key,
            output,
        }
    }

    /// The binary with the basic flags for the standard App and installation 100 (acme).
    pub fn cmd(&self, sub: &str) -> Command {
        let mut c = bare_cmd();
        c.arg(sub);
        c.args(["--app-id", &self.fake.app().id.to_string()]);
        c.arg("--private-key-file").arg(&self.key);
        c.arg("--output").arg(&self.output);
        c.args(["--api-url", &self.fake.url()]);
        c
    }

    pub fn once(&self, extra: &[&str]) -> Output {
        let mut c = self.cmd("once");
        c.args(extra);
        run(c)
    }

    pub fn read_file(&self) -> TokenFile {
        token_file::read(&self.output).expect("token file readable")
    }

    /// Every secret the fake handed out, for leak checks.
    pub fn secrets(&self) -> Vec<String> {
        self.fake.tokens().into_iter().map(|t| t.token).collect()
    }
}

pub fn write_key(path: &Path, pem: &str) {
    fs::write(path, pem).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

pub fn bare_cmd() -> Command {
    let mut c = Command::new(BIN);
    for v in OUR_VARS {
        c.env_remove(v);
    }
    c.env("RUST_LOG", "debug");
    c.stdin(Stdio::null());
    c
}

pub fn run(mut c: Command) -> Output {
    c.output().expect("binary runs")
}

/// `once` at trace level with the standard flags and `extra`.
pub fn once_trace(env: &TestEnv, extra: &[&str]) -> Output {
    let mut c = env.cmd("once");
    c.args(extra).env("RUST_LOG", "trace");
    run(c)
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Assert no secret (any minted token, any JWT, any key material) appears in `output`:
/// [`assert_clean`] with no key files, and not even a PEM header (`PRIVATE KEY`).
pub fn assert_no_secrets(output: &str, tokens: &[String]) {
    assert_clean(output, tokens, &[]);
    assert!(
        !output.contains("PRIVATE KEY"),
        "key material leaked into the output"
    );
}

/// Assert no secret appears in `output`: none of `tokens`, nothing token- or JWT-shaped, no
/// `MII…` DER prefix, and none of the base64 lines of the given PEM `keys`. A message may
/// name the PEM header a key file should have (`-----BEGIN RSA PRIVATE KEY-----`).
pub fn assert_clean(output: &str, tokens: &[String], keys: &[&str]) {
    for t in tokens {
        assert!(
            !output.contains(t.as_str()),
            "a token leaked into the output"
        );
    }
    assert!(
        !output.contains("ghs_"),
        "a token-shaped string leaked into the output"
    );
    assert!(!output.contains("eyJ"), "a JWT leaked into the output");
    assert!(
        !output.contains("MII"),
        "key material leaked into the output"
    );
    for pem in keys {
        for line in pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 24)
        {
            assert!(
                !output.contains(&line[..24]),
                "a line of a private key leaked into the output"
            );
        }
    }
}

/// Decode a JWT's claims (no verification: the fake verified it).
pub fn jwt_claims(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Collects sd_notify datagrams sent to a socket in a temp dir.
pub struct Notify {
    pub path: PathBuf,
    rx: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Notify {
    pub fn new(dir: &Path) -> Notify {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = sock.recv(&mut buf) {
                if tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
                {
                    break;
                }
            }
        });
        Notify {
            path,
            rx,
            seen: Vec::new(),
        }
    }

    /// Take every datagram received so far into `seen`; returns the new ones.
    pub fn drain(&mut self) -> Vec<String> {
        let fresh: Vec<String> = self.rx.try_iter().collect();
        self.seen.extend(fresh.iter().cloned());
        fresh
    }

    /// Wait for a datagram with a line satisfying `pred` (only datagrams not yet taken count);
    /// returns that datagram.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(msg) => {
                    self.seen.push(msg.clone());
                    if msg.lines().any(&pred) {
                        return msg;
                    }
                }
                Err(_) => panic!(
                    "no sd_notify message with {what} within {timeout:?}; seen: {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Every STATUS= text seen so far (after a drain), oldest first.
    pub fn statuses(&mut self) -> Vec<String> {
        self.drain();
        self.seen
            .iter()
            .map(|m| status_of(m).to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// All datagrams as one text, for leak checks.
    pub fn all(&mut self) -> String {
        self.drain();
        self.seen.join("\n")
    }
}

/// Wait (up to 20 s) for `READY=1`; returns that datagram.
pub fn ready(n: &mut Notify) -> String {
    n.wait_for("READY=1", Duration::from_secs(20), |l| l == "READY=1")
}

/// The STATUS= line of a notify datagram.
pub fn status_of(datagram: &str) -> &str {
    datagram
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or("")
}

/// Wait for a STATUS= line satisfying `pred`; returns the line (without `STATUS=`).
pub fn wait_status(
    n: &mut Notify,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> String {
    let msg = n.wait_for(what, timeout, |l| {
        l.strip_prefix("STATUS=").is_some_and(&pred)
    });
    status_of(&msg).to_owned()
}

/// A child process (the daemon, usually) with stdout and stderr read continuously; killed
/// on drop.
pub struct Proc {
    pub child: Child,
    out: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Proc {
    pub fn spawn(mut c: Command) -> Proc {
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("the binary starts");
        let out = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let pipes: Vec<Box<dyn Read + Send>> = vec![
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for mut pipe in pipes {
            let out = out.clone();
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }));
        }
        Proc {
            child,
            out,
            readers,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Everything printed so far.
    pub fn log(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Send `sig`; panics if it cannot be sent.
    pub fn signal(&self, sig: rustix::process::Signal) {
        self.send(sig).expect("the signal is sent");
    }

    fn send(&self, sig: rustix::process::Signal) -> rustix::io::Result<()> {
        let pid = rustix::process::Pid::from_raw(self.pid()).unwrap();
        rustix::process::kill_process(pid, sig)
    }

    /// Wait until the output satisfies `pred`.
    pub fn wait_log(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if pred(&self.log()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no {what} in the output within {timeout:?}; output:\n{}",
            self.log()
        );
    }

    pub fn exited(&mut self) -> Option<i32> {
        self.child
            .try_wait()
            .unwrap()
            .map(|s| s.code().unwrap_or(-1))
    }

    /// SIGTERM (if it is still there), wait up to `timeout` (then SIGKILL); exit code and
    /// all output.
    pub fn stop(self, timeout: Duration) -> (Option<i32>, String) {
        let _ = self.send(rustix::process::Signal::TERM);
        self.finish(timeout)
    }

    /// Wait up to `timeout` for it to exit by itself (then SIGKILL); exit code and output.
    pub fn finish(mut self, timeout: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + timeout;
        let mut status = None;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                status = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if status.is_none() {
            let _ = self.child.kill();
            status = self.child.wait().ok();
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        (status.and_then(|s| s.code()), self.log())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `run` with the standard flags, `extra`, the notify socket and `RUST_LOG=trace`.
pub fn daemon(env: &TestEnv, n: &Notify, extra: &[&str]) -> Proc {
    daemon_with(env, n, extra, &[])
}

/// [`daemon`] with extra environment variables (e.g. `JOURNAL_STREAM`, as under systemd,
/// which switches the log to the journal's format).
pub fn daemon_with(env: &TestEnv, n: &Notify, extra: &[&str], vars: &[(&str, &str)]) -> Proc {
    let mut c = env.cmd("run");
    c.args(extra);
    c.env("NOTIFY_SOCKET", &n.path).env("RUST_LOG", "trace");
    for (k, v) in vars {
        c.env(k, v);
    }
    Proc::spawn(c)
}

/// A notify socket in `env`'s directory and a [`daemon`] with `extra` that has said READY=1
/// (waited for as [`ready`] does).
pub fn daemon_ready(env: &TestEnv, extra: &[&str]) -> (Notify, Proc) {
    daemon_ready_with(env, extra, &[])
}

/// [`daemon_ready`] with extra environment variables, as [`daemon_with`].
pub fn daemon_ready_with(env: &TestEnv, extra: &[&str], vars: &[(&str, &str)]) -> (Notify, Proc) {
    let mut n = Notify::new(env.dir.path());
    let d = daemon_with(env, &n, extra, vars);
    ready(&mut n);
    (n, d)
}

/// `run` with [`FAST`] for App 1234 against `api_url` with this `key` and `output` (not a
/// [`TestEnv`]'s) at trace level, not yet started.
pub fn fast_run_cmd(api_url: &str, key: &Path, output: &Path) -> Command {
    let mut c = bare_cmd();
    c.arg("run")
        .args(["--app-id", "1234", "--api-url", api_url])
        .arg("--private-key-file")
        .arg(key)
        .arg("--output")
        .arg(output)
        .args(FAST)
        .env("RUST_LOG", "trace");
    c
}

/// Write `targets.toml` in `env`'s directory: the standard App, its key and the fake's API
/// URL, then `rest` (settings and `[[target]]` tables) as given; its path.
pub fn write_targets_toml(env: &TestEnv, rest: &str) -> PathBuf {
    let path = env.dir.path().join("targets.toml");
    let text = format!(
        "app_id = {}\nprivate_key_file = \"{}\"\napi_url = \"{}\"\n{rest}",
        env.fake.app().id,
        env.key.display(),
        env.fake.url()
    );
    fs::write(&path, text).unwrap();
    path
}

/// `run --config CONFIG` (no flags) with the notify socket.
pub fn daemon_config(config: &Path, n: &Notify) -> Proc {
    let mut c = bare_cmd();
    c.arg("run")
        .arg("--config")
        .arg(config)
        .env("NOTIFY_SOCKET", &n.path);
    Proc::spawn(c)
}

/// A notify socket in `env`'s directory and [`daemon_config`] on `config`, waited for (up
/// to 20 s, as [`ready`]); the notify socket, the daemon and its READY=1 datagram.
pub fn daemon_config_ready(env: &TestEnv, config: &Path) -> (Notify, Proc, String) {
    let mut n = Notify::new(env.dir.path());
    let d = daemon_config(config, &n);
    let ready = ready(&mut n);
    (n, d, ready)
}

/// Poll until `pred` holds or panic after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if pred() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Sleep in small steps until `deadline`.
pub fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

/// What a watcher saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub reads: u64,
    /// Reads that found no file, an empty or partial file, or a token the check refused.
    pub bad: u64,
    /// The first few problems, for the failure message.
    pub problems: Vec<String>,
    pub generations: BTreeSet<u64>,
}

impl Seen {
    fn problem(&mut self, p: String) {
        self.bad += 1;
        if self.problems.len() < 20 {
            self.problems.push(p);
        }
    }
}

/// Re-read each of `paths` as fast as possible until `stop`, checking every read: the file
/// exists, parses as a complete token file, and passes `check` (e.g. "the fake accepts the
/// token"). `pause` between rounds leaves the CPU to the daemon.
pub fn watch<'scope, 'env>(
    s: &'scope Scope<'scope, 'env>,
    paths: Vec<PathBuf>,
    stop: &'scope AtomicBool,
    pause: Duration,
    check: impl Fn(&Path, &TokenFile) -> Result<(), String> + Send + 'scope,
) -> ScopedJoinHandle<'scope, Seen> {
    s.spawn(move || {
        let mut seen = Seen::default();
        while !stop.load(Ordering::Relaxed) {
            for p in &paths {
                seen.reads += 1;
                match std::fs::read(p) {
                    Err(e) => seen.problem(format!("'{}': {e}", p.display())),
                    Ok(bytes) => match std::str::from_utf8(&bytes)
                        .map_err(|e| e.to_string())
                        .and_then(TokenFile::parse)
                    {
                        Err(e) => {
                            seen.problem(format!("'{}' ({} bytes): {e}", p.display(), bytes.len()))
                        }
                        Ok(f) => {
                            seen.generations.insert(f.generation);
                            if let Err(e) = check(p, &f) {
                                seen.problem(format!(
                                    "'{}' generation {}: {e}",
                                    p.display(),
                                    f.generation
                                ));
                            }
                        }
                    },
                }
            }
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
        seen
    })
}

/// A check for [`watch`]: the fake minted this token and it has not expired by its clock.
pub fn valid_on(fake: &FakeGithub) -> impl Fn(&Path, &TokenFile) -> Result<(), String> + '_ {
    move |_, f| {
        if fake.is_token_valid(f.token.expose()) {
            Ok(())
        } else if f.expires_at_unix <= fake.now().timestamp() {
            Err(format!("token expired at {}", f.expires_at))
        } else {
            Err("token unknown to the fake GitHub".into())
        }
    }
}

/// Arrival times of the mint requests for installation 100.
pub fn mint_times(fake: &FakeGithub) -> Vec<SystemTime> {
    fake.requests_to("POST", "/app/installations/100/access_tokens")
        .into_iter()
        .map(|r| r.time)
        .collect()
}

/// Arrival times of the mint requests for installation 100 at or after `since`.
pub fn mint_times_since(fake: &FakeGithub, since: SystemTime) -> Vec<SystemTime> {
    mint_times(fake)
        .into_iter()
        .filter(|t| *t >= since)
        .collect()
}

/// Seconds between consecutive times.
pub fn gaps(times: &[SystemTime]) -> Vec<f64> {
    times
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).unwrap_or_default().as_secs_f64())
        .collect()
}

/// The most requests in any `window` (sliding, anchored at each request).
pub fn max_in_window(times: &[SystemTime], window: Duration) -> usize {
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| t.duration_since(times[i]).unwrap_or_default() < window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// A free loopback port with nothing listening on it (yet).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The generation in the token file, 0 when unreadable.
pub fn generation(path: &Path) -> u64 {
    token_file::read(path).map_or(0, |f| f.generation)
}

/// `VmRSS` in KiB and the number of open file descriptors of `pid`.
pub fn rss_and_fds(pid: i32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}

/// Run `body` while a [`watch`] thread re-reads `paths` (see there), then stop the watcher
/// and return what it saw. The watcher stops also when `body` panics, so a failing
/// assertion fails the test instead of hanging it.
pub fn watching(
    paths: Vec<PathBuf>,
    pause: Duration,
    check: impl Fn(&Path, &TokenFile) -> Result<(), String> + Send,
    body: impl FnOnce(),
) -> Seen {
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let w = watch(s, paths, &stop, pause, check);
        {
            let _stop = StopOnDrop(&stop);
            body();
        }
        w.join().unwrap()
    })
}

/// The single-target schedule flags most daemon tests use: installation 100, a refresh
/// every `refresh`, no jitter, due when less than `min_remaining` is left.
pub fn schedule<'a>(refresh: &'a str, min_remaining: &'a str) -> [&'a str; 8] {
    [
        "--installation-id",
        "100",
        "--refresh-interval",
        refresh,
        "--jitter",
        "0s",
        "--min-remaining",
        min_remaining,
    ]
}
