//! The consumer commands (`git-credential`, `token`, `exec`, `watch`) run as the real
//! binary against token files written the way the daemon writes them (temp file + rename),
//! and `git-credential` through the real `git`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_github-token-refresher");

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Publish like the daemon: write a temp file in the same directory, then rename it over
/// the target (so readers see the old or the new file, and inotify sees IN_MOVED_TO).
fn publish(path: &Path, token: &str, expires_in_secs: i64, api_url: &str) {
    static N: AtomicU32 = AtomicU32::new(0);
    let expires = now_unix() + expires_in_secs;
    let json = serde_json::json!({
        "token": token,
        "expires_at": rfc3339(expires),
        "expires_at_unix": expires,
        "api_url": api_url,
        "account": "acme",
    });
    let temp = path.with_file_name(format!(
        ".token.json.tmp-test-{}",
        N.fetch_add(1, Ordering::Relaxed)
    ));
    fs::write(&temp, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    fs::set_permissions(&temp, fs::Permissions::from_mode(0o600)).unwrap();
    fs::rename(&temp, path).unwrap();
}

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// `SUB --file FILE`: a consumer command reading this sandbox's token file.
    fn cmd(&self, sub: &str) -> Command {
        let mut c = bin();
        c.arg(sub).arg("--file").arg(self.file());
        c
    }

    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sharing")).unwrap();
        Sandbox { dir }
    }
    fn file(&self) -> PathBuf {
        self.dir.path().join("sharing/token.json")
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// A git repository whose credential helpers are exactly `helpers`, isolated from the
    /// user's and the system's git configuration.
    fn git(&self, helpers: &[String]) -> impl Fn(&[&str], &str) -> Output + '_ {
        let repo = self.path("repo");
        if !repo.exists() {
            let st = self
                .git_cmd(&repo)
                .args(["init", "-q"])
                .arg(&repo)
                .status()
                .unwrap();
            assert!(st.success());
        }
        let _ = self
            .git_cmd(&repo)
            .args(["config", "--unset-all", "credential.helper"])
            .status();
        for h in helpers {
            let st = self
                .git_cmd(&repo)
                .args(["config", "--add", "credential.helper", h])
                .status()
                .unwrap();
            assert!(st.success());
        }
        move |args: &[&str], stdin: &str| run_with_stdin(self.git_cmd(&repo).args(args), stdin)
    }
    fn git_cmd(&self, repo: &Path) -> Command {
        let mut c = Command::new("git");
        c.current_dir(if repo.exists() { repo } else { self.dir.path() })
            .env("HOME", self.dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_ASKPASS")
            .env_remove("SSH_ASKPASS")
            .env_remove("GITHUB_TOKEN_FILE")
            .env_remove("GITHUB_TOKEN_MIN_REMAINING");
        c
    }
}

fn run_with_stdin(cmd: &mut Command, stdin: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn bin() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("GITHUB_TOKEN_FILE")
        .env_remove("GITHUB_TOKEN_MIN_REMAINING")
        .env_remove("GH_TOKEN")
        .env_remove("GITHUB_TOKEN");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What git asks a credential helper for https://github.com.
const GITHUB_COM: &str = "protocol=https\nhost=github.com\n\n";

/// `git-credential --file FILE OP` run directly, asked [`GITHUB_COM`].
fn git_credential(file: &Path, op: &str) -> Output {
    run_with_stdin(
        bin().args(["git-credential", "--file"]).arg(file).arg(op),
        GITHUB_COM,
    )
}

fn helper_for(file: &Path) -> String {
    format!("!'{BIN}' git-credential --file '{}'", file.display())
}

/// A second helper that answers everything, to see git fall through to it.
const FALLBACK_HELPER: &str =
    "!f() { test \"$1\" = get && echo username=fallback && echo password=fallback-pw; }; f";

// ---------------------------------------------------------------------------------------
// git-credential

#[test]
fn git_credential_fill_round_trip_with_real_git() {
    let sb = Sandbox::new();
    publish(&sb.file(), "ghs_roundtrip", 3600, "https://api.github.com");
    let git = sb.git(&[helper_for(&sb.file()), FALLBACK_HELPER.into()]);
    let out = git(
        &["credential", "fill"],
        "protocol=https\nhost=github.com\npath=acme/widgets.git\n\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let expiry = format!("password_expiry_utc={}", now_unix() + 3600);
    assert!(stdout.contains("username=x-access-token\n"), "{stdout}");
    assert!(stdout.contains("password=ghs_roundtrip\n"), "{stdout}");
    // within a second of what was written
    let line = stdout
        .lines()
        .find(|l| l.starts_with("password_expiry_utc="))
        .unwrap_or_else(|| panic!("no expiry in {stdout}"));
    let written: i64 = line["password_expiry_utc=".len()..].parse().unwrap();
    assert!(
        (written - (now_unix() + 3600)).abs() <= 2,
        "{line} vs {expiry}"
    );
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));

    // the same with a URL, as `git clone https://github.com/…` asks
    let out = git(
        &["credential", "fill"],
        "url=https://github.com/acme/widgets.git\n\n",
    );
    assert!(text(&out.stdout).contains("password=ghs_roundtrip\n"));
}

#[test]
fn git_credential_leaves_other_hosts_and_protocols_to_the_next_helper() {
    let sb = Sandbox::new();
    publish(&sb.file(), "ghs_mine", 3600, "https://api.github.com");
    let git = sb.git(&[helper_for(&sb.file()), FALLBACK_HELPER.into()]);
    for request in [
        "protocol=https\nhost=gitlab.com\n\n",
        "protocol=http\nhost=github.com\n\n",
        "protocol=https\nhost=api.github.com\n\n",
        "protocol=https\nhost=github.com\nusername=alice\n\n",
    ] {
        let out = git(&["credential", "fill"], request);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{request}: {}", text(&out.stderr));
        assert!(
            stdout.contains("password=fallback-pw"),
            "{request}: {stdout}"
        );
        assert!(!stdout.contains("ghs_mine"), "{request}: {stdout}");
        assert!(
            text(&out.stderr).is_empty(),
            "{request}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn git_credential_for_ghes_answers_only_the_ghes_host() {
    let sb = Sandbox::new();
    publish(
        &sb.file(),
        "ghs_enterprise",
        3600,
        "https://ghe.example.com/api/v3",
    );
    let git = sb.git(&[helper_for(&sb.file()), FALLBACK_HELPER.into()]);
    let out = git(
        &["credential", "fill"],
        "protocol=https\nhost=ghe.example.com\n\n",
    );
    assert!(text(&out.stdout).contains("password=ghs_enterprise\n"));
    let out = git(&["credential", "fill"], GITHUB_COM);
    assert!(text(&out.stdout).contains("password=fallback-pw\n"));
    assert!(!text(&out.stdout).contains("ghs_enterprise"));
}

#[test]
fn git_credential_with_an_expired_token_says_so_and_gives_nothing() {
    let sb = Sandbox::new();
    publish(&sb.file(), "ghs_stale", -120, "https://api.github.com");
    let git = sb.git(&[helper_for(&sb.file()), FALLBACK_HELPER.into()]);
    let out = git(&["credential", "fill"], GITHUB_COM);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(stdout.contains("password=fallback-pw"), "{stdout}");
    assert!(!stdout.contains("ghs_stale") && !stderr.contains("ghs_stale"));
    // "expired 2m ago", or "2m 1s" on a slow machine: the seconds are not the point
    assert!(stderr.contains("expired 2m"), "{stderr}");
    assert!(
        stderr.contains(&sb.file().display().to_string()),
        "{stderr}"
    );

    // alone, git gets nothing and (with prompts off) fails; the helper itself exits 0
    let git = sb.git(&[helper_for(&sb.file())]);
    let out = git(&["credential", "fill"], GITHUB_COM);
    assert!(!out.status.success());
    let direct = git_credential(&sb.file(), "get");
    assert_eq!(direct.status.code(), Some(0));
    assert!(direct.stdout.is_empty());
}

#[test]
fn git_credential_expiring_soon_still_answers_with_a_warning() {
    let sb = Sandbox::new();
    publish(&sb.file(), "ghs_soon", 300, "https://api.github.com");
    let out = git_credential(&sb.file(), "get");
    assert!(text(&out.stdout).contains("password=ghs_soon\n"));
    assert!(
        text(&out.stderr).contains("expires in"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn git_credential_without_a_file_says_so_and_git_goes_on() {
    let sb = Sandbox::new();
    let git = sb.git(&[helper_for(&sb.file()), FALLBACK_HELPER.into()]);
    let out = git(&["credential", "fill"], GITHUB_COM);
    assert!(text(&out.stdout).contains("password=fallback-pw"));
    assert!(
        text(&out.stderr).contains("does not exist"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn git_credential_ignores_store_and_erase() {
    let sb = Sandbox::new();
    publish(&sb.file(), "ghs_keep", 3600, "https://api.github.com");
    let before = fs::read(sb.file()).unwrap();
    let git = sb.git(&[helper_for(&sb.file())]);
    for action in ["approve", "reject"] {
        let out = git(
            &["credential", action],
            "protocol=https\nhost=github.com\nusername=x-access-token\npassword=other\n\n",
        );
        assert!(out.status.success(), "{action}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{action}");
    }
    for op in ["store", "erase", "some-future-op"] {
        let out = git_credential(&sb.file(), op);
        assert_eq!(out.status.code(), Some(0), "{op}");
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{op}");
    }
    assert_eq!(fs::read(sb.file()).unwrap(), before);
}

#[test]
fn installed_as_git_credential_helper_name_git_finds_it() {
    let sb = Sandbox::new();
    publish(&sb.file(), "ghs_installed", 3600, "https://api.github.com");
    let bindir = sb.path("bin");
    fs::create_dir(&bindir).unwrap();
    std::os::unix::fs::symlink(BIN, bindir.join("git-credential-github-token-refresher")).unwrap();
    // `credential.helper = github-token-refresher --file X` → `git credential-github-token-refresher --file X get`
    let git = sb.git(&[format!(
        "github-token-refresher --file '{}'",
        sb.file().display()
    )]);
    let path = format!(
        "{}:{}",
        bindir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let repo = sb.path("repo");
    let out = run_with_stdin(
        sb.git_cmd(&repo)
            .env("PATH", path)
            .args(["credential", "fill"]),
        GITHUB_COM,
    );
    drop(git);
    assert!(
        text(&out.stdout).contains("password=ghs_installed\n"),
        "{} / {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// token

#[test]
fn token_prints_exactly_the_token() {
    let sb = Sandbox::new();
    publish(&sb.file(), "ghs_print", 3600, "");
    let out = sb.cmd("token").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ghs_print\n");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    // the file can come from the environment
    let out = bin()
        .arg("token")
        .env("GITHUB_TOKEN_FILE", sb.file())
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "ghs_print\n");
}

#[test]
fn token_refuses_expired_and_expiring_tokens() {
    let sb = Sandbox::new();
    publish(&sb.file(), "ghs_old", -30, "");
    let out = sb.cmd("token").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("expired 30s ago")
            || text(&out.stderr).contains("expired 31s ago"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stderr).contains("ghs_old"));

    publish(&sb.file(), "ghs_soon", 300, "");
    let out = sb.cmd("token").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "default --min-remaining is 10m");
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("less than --min-remaining"),
        "{}",
        text(&out.stderr)
    );
    let out = sb
        .cmd("token")
        .args(["--min-remaining", "1m"])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "ghs_soon\n");
    let out = sb
        .cmd("token")
        .env("GITHUB_TOKEN_MIN_REMAINING", "4m")
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "ghs_soon\n");
}

#[test]
fn token_explains_a_missing_file() {
    let sb = Sandbox::new();
    let out = sb.cmd("token").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("does not exist") && stderr.contains("mount the directory"),
        "{stderr}"
    );
}

#[test]
fn token_warns_when_others_can_read_the_file() {
    let sb = Sandbox::new();
    publish(&sb.file(), "ghs_open", 3600, "");
    fs::set_permissions(sb.file(), fs::Permissions::from_mode(0o644)).unwrap();
    let out = sb.cmd("token").output().unwrap();
    assert_eq!(text(&out.stdout), "ghs_open\n");
    assert!(
        text(&out.stderr).contains("readable by its group and all users (mode 0644)"),
        "{}",
        text(&out.stderr)
    );
}

/// Run `token --wait` in the background, publish after `delay`, and return how long after
/// the publish it printed the token.
fn wait_then_publish(sb: &Sandbox, delay: Duration) -> (Output, Duration) {
    let child = sb
        .cmd("token")
        .args(["--wait", "20s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guard = ChildGuard(Some(child));
    std::thread::sleep(delay);
    if !sb.file().parent().unwrap().exists() {
        fs::create_dir(sb.file().parent().unwrap()).unwrap();
    }
    let published = Instant::now();
    publish(&sb.file(), "ghs_late", 3600, "");
    let out = guard.wait_output();
    (out, published.elapsed())
}

#[test]
fn token_wait_sees_a_file_published_later() {
    let sb = Sandbox::new();
    let (out, took) = wait_then_publish(&sb, Duration::from_millis(700));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ghs_late\n");
    assert!(
        text(&out.stderr).contains("waiting up to 20s"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        took < Duration::from_millis(400),
        "inotify, not polling: {took:?}"
    );
}

#[test]
fn token_wait_replaces_an_expired_file_and_a_missing_directory() {
    let sb = Sandbox::new();
    publish(&sb.file(), "ghs_old", -10, "");
    let (out, _) = wait_then_publish(&sb, Duration::from_millis(500));
    assert_eq!(text(&out.stdout), "ghs_late\n");

    // the directory itself is not there when the sandbox starts
    let sb = Sandbox::new();
    fs::remove_dir(sb.file().parent().unwrap()).unwrap();
    let (out, took) = wait_then_publish(&sb, Duration::from_millis(500));
    assert_eq!(text(&out.stdout), "ghs_late\n", "{}", text(&out.stderr));
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn token_wait_gives_up_after_the_duration() {
    let sb = Sandbox::new();
    let start = Instant::now();
    let out = sb.cmd("token").args(["--wait", "1s"]).output().unwrap();
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

// ---------------------------------------------------------------------------------------
// exec

#[test]
fn exec_passes_the_token_in_the_environment_and_the_exit_status_back() {
    let sb = Sandbox::new();
    publish(&sb.file(), "ghs_exec", 3600, "");
    let out = sb
        .cmd("exec")
        .args([
            "--",
            "sh",
            "-c",
            "printf '%s %s %s' \"$GH_TOKEN\" \"$GITHUB_TOKEN\" \"$#\"; exit 7",
            "sh",
            "-x",
            "y",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ghs_exec ghs_exec 2");
    assert!(out.stderr.is_empty());
}

#[test]
fn exec_becomes_the_command_so_a_signal_is_its_own() {
    let sb = Sandbox::new();
    publish(&sb.file(), "ghs_exec", 3600, "");
    let out = sb
        .cmd("exec")
        .args(["--", "sh", "-c", "kill -TERM $$"])
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(15));
    // and a shell sees 128 + n
    let script = format!(
        "'{BIN}' exec --file '{}' -- sh -c 'kill -TERM $$'; echo $?",
        sb.file().display()
    );
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert_eq!(text(&out.stdout).trim(), "143");
}

#[test]
fn exec_refuses_an_expired_token_and_does_not_run_the_command() {
    let sb = Sandbox::new();
    publish(&sb.file(), "ghs_old", -5, "");
    let marker = sb.path("ran");
    let out = sb
        .cmd("exec")
        .args(["--", "touch"])
        .arg(&marker)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!marker.exists());
    assert!(
        text(&out.stderr).contains("expired"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn exec_reports_a_missing_command_as_127() {
    let sb = Sandbox::new();
    publish(&sb.file(), "ghs_exec", 3600, "");
    let out = sb
        .cmd("exec")
        .args(["--", "/nonexistent/tool"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(!text(&out.stderr).contains("ghs_exec"));
}

// ---------------------------------------------------------------------------------------
// watch

struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn wait_output(mut self) -> Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }
    /// Stop it and return what it wrote to stderr.
    fn stop(mut self) -> String {
        let mut child = self.0.take().unwrap();
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        text(&out.stderr)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Lines the hook has appended so far, once they stop changing for a moment.
fn hook_lines(log: &Path, expect: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let read = || -> Vec<String> {
        fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    while read().len() < expect && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // longer than the debounce, to catch an extra run
    std::thread::sleep(Duration::from_millis(900));
    read()
}

fn start_watch(sb: &Sandbox, log: &Path, extra: &[&str]) -> ChildGuard {
    let hook = format!(
        "printf '%s %s\\n' \"$GH_TOKEN\" \"$GITHUB_TOKEN_EXPIRES_AT\" >> '{}'",
        log.display()
    );
    let child = sb
        .cmd("watch")
        .arg("--exec")
        .arg(hook)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ChildGuard(Some(child))
}

fn tokens(lines: &[String]) -> Vec<&str> {
    lines.iter().map(|l| l.split(' ').next().unwrap()).collect()
}

#[test]
fn watch_runs_the_hook_at_start_and_for_each_new_token_only() {
    let sb = Sandbox::new();
    let log = sb.path("hook.log");
    publish(&sb.file(), "ghs_one", 3600, "");
    let watch = start_watch(&sb, &log, &[]);
    assert_eq!(tokens(&hook_lines(&log, 1)), ["ghs_one"], "hook at start");

    publish(&sb.file(), "ghs_two", 3600, "");
    let lines = hook_lines(&log, 2);
    assert_eq!(tokens(&lines), ["ghs_one", "ghs_two"]);
    assert!(
        lines[1].ends_with('Z'),
        "GITHUB_TOKEN_EXPIRES_AT is passed: {}",
        lines[1]
    );

    // the same token written again (a new generation, a touch) is not new
    publish(&sb.file(), "ghs_two", 3000, "");
    assert_eq!(hook_lines(&log, 3).len(), 2);

    // a burst of writes runs the hook once, for the last token
    for i in 0..5 {
        publish(&sb.file(), &format!("ghs_burst{i}"), 3600, "");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        tokens(&hook_lines(&log, 3)),
        ["ghs_one", "ghs_two", "ghs_burst4"]
    );

    // a writer that doesn't rename (truncate + write) is seen too
    let mut json: serde_json::Value =
        serde_json::from_slice(&fs::read(sb.file()).unwrap()).unwrap();
    json["token"] = "ghs_inplace".into();
    fs::write(sb.file(), serde_json::to_vec(&json).unwrap()).unwrap();
    assert_eq!(tokens(&hook_lines(&log, 4))[3], "ghs_inplace");

    let stderr = watch.stop();
    assert!(
        !stderr.contains("ghs_"),
        "the token never reaches stderr: {stderr}"
    );
}

#[test]
fn watch_survives_the_directory_being_removed_and_recreated() {
    let sb = Sandbox::new();
    let log = sb.path("hook.log");
    let dir = sb.file().parent().unwrap().to_owned();
    fs::remove_dir(&dir).unwrap();
    let watch = start_watch(&sb, &log, &[]);
    std::thread::sleep(Duration::from_millis(300));
    fs::create_dir(&dir).unwrap();
    publish(&sb.file(), "ghs_first", 3600, "");
    assert_eq!(tokens(&hook_lines(&log, 1)), ["ghs_first"]);

    fs::remove_file(sb.file()).unwrap();
    fs::remove_dir(&dir).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    fs::create_dir(&dir).unwrap();
    std::thread::sleep(Duration::from_millis(1500)); // the missing-directory poll finds it
    publish(&sb.file(), "ghs_second", 3600, "");
    assert_eq!(tokens(&hook_lines(&log, 2)), ["ghs_first", "ghs_second"]);
    let stderr = watch.stop();
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[test]
#[ignore = "slow: full tier only (cargo test --workspace --locked -- --include-ignored)"]
fn watch_skip_initial_and_expired_tokens() {
    let sb = Sandbox::new();
    let log = sb.path("hook.log");
    publish(&sb.file(), "ghs_present", 3600, "");
    let watch = start_watch(&sb, &log, &["--skip-initial"]);
    assert!(hook_lines(&log, 1).is_empty());
    publish(&sb.file(), "ghs_next", 3600, "");
    assert_eq!(tokens(&hook_lines(&log, 1)), ["ghs_next"]);
    drop(watch);

    // an expired token is never handed to the hook, and that is said on stderr
    let sb = Sandbox::new();
    let log = sb.path("hook.log");
    publish(&sb.file(), "ghs_dead", -60, "");
    let watch = start_watch(&sb, &log, &[]);
    assert!(hook_lines(&log, 1).is_empty());
    let stderr = watch.stop();
    assert!(
        stderr.contains("expired 1m ago") || stderr.contains("expired 1m 1s ago"),
        "{stderr}"
    );
}

#[test]
fn watch_reports_a_failing_hook_and_keeps_going() {
    let sb = Sandbox::new();
    publish(&sb.file(), "ghs_a", 3600, "");
    let log = sb.path("hook.log");
    let hook = format!("echo run >> '{}'; exit 3", log.display());
    let child = sb
        .cmd("watch")
        .arg("--exec")
        .arg(hook)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let watch = ChildGuard(Some(child));
    assert_eq!(hook_lines(&log, 1).len(), 1);
    publish(&sb.file(), "ghs_b", 3600, "");
    assert_eq!(hook_lines(&log, 2).len(), 2);
    let stderr = watch.stop();
    assert!(stderr.contains("hook exited with status 3"), "{stderr}");
}
