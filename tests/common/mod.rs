//! Test support shared by the integration tests: a fake GitHub, a throwaway key and output
//! directory, the real binary with a clean environment, and an sd_notify listener.

#![allow(dead_code, unused_imports)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Assert no secret (any minted token, any JWT, any key material) appears in `output`.
pub fn assert_no_secrets(output: &str, tokens: &[String]) {
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
        !output.contains("PRIVATE KEY"),
        "key material leaked into the output"
    );
    assert!(
        !output.contains("MII"),
        "key material leaked into the output"
    );
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
pub struct NotifyListener {
    pub path: PathBuf,
    rx: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl NotifyListener {
    pub fn new(dir: &Path) -> NotifyListener {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                if tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
                {
                    break;
                }
            }
        });
        NotifyListener {
            path,
            rx,
            seen: Vec::new(),
        }
    }

    /// Wait for a datagram that has a line satisfying `pred`; returns that datagram.
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
}

/// A running daemon, killed on drop.
pub struct Daemon {
    pub child: Child,
}

impl Daemon {
    pub fn spawn(mut c: Command) -> Daemon {
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        Daemon {
            child: c.spawn().expect("daemon starts"),
        }
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    /// Wait for exit (killing it after `timeout`); returns exit code and all output.
    pub fn finish(mut self, timeout: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let child = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap());
        let out = child.wait_with_output().unwrap();
        (out.status.code(), text(&out))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
