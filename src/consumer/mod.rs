//! The consumer side: commands that run INSIDE the sandbox or container and only ever read
//! the token file the host's daemon publishes (no key, no network).
//!
//! - `git-credential`: a git credential helper (also installable as
//!   `git-credential-github-token-refresher`, see [`git_credential_main`]).
//! - `token`: print the token, for `GH_TOKEN=$(github-token-refresher token --file …)`.
//! - `exec -- CMD …`: replace this process with CMD, `GH_TOKEN`/`GITHUB_TOKEN` set.
//! - `watch --exec CMD`: run a hook each time a new token lands (inotify on the directory;
//!   with `--socket`, polling the daemon's socket).
//!
//! None of them ever prints the token, except `token` on stdout; all of them warn on
//! stderr when the file is readable by users other than its owner. Messages go to stderr
//! as plain `github-token-refresher: …` lines (no logging setup needed): a credential
//! helper's stderr is the user's terminal.
//!
//! Exit statuses: 0 ok; 1 no usable token (missing, unreadable, expired, or expiring
//! within `--min-remaining`); 78 a bad flag; `exec` exits with CMD's status (it *becomes*
//! CMD), or 126/127 when CMD can't be run. `git-credential` always exits 0, because git treats a helper's
//! failure like "no answer" anyway and the reason is on stderr.

mod credential;
mod dirwatch;
mod socket;

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Parser;

use crate::durations::{DEFAULT_MIN_REMAINING, parse_duration};
use crate::error::exit;
use crate::secret::Secret;
use crate::token_file::{self, Freshness, ReadError, TokenFile};

pub use credential::git_host_for_api;
use dirwatch::{DirWatcher, Wake};

const PREFIX: &str = "github-token-refresher";

/// The name to install (or symlink) the binary under so that
/// `git config credential.helper github-token-refresher` finds it.
pub const GIT_CREDENTIAL_NAME: &str = "git-credential-github-token-refresher";

const EXIT_OK: i32 = exit::OK;
const EXIT_NO_TOKEN: i32 = exit::FAILURE;
/// As a shell reports them: found but not runnable, not found.
const EXIT_CANNOT_EXECUTE: i32 = 126;
const EXIT_NOT_FOUND: i32 = 127;
/// A bad flag, as everywhere in this binary.
const EXIT_USAGE: i32 = exit::CONFIG;

#[derive(clap::Subcommand, Debug)]
pub enum ConsumerCommand {
    /// Inside a container: git credential helper answering from the token file
    ///
    /// Configure with
    /// `git config --global credential.https://github.com.helper '!github-token-refresher git-credential --file /run/github-token/token.json'`,
    /// or install the binary as `git-credential-github-token-refresher` and set
    /// `credential.helper 'github-token-refresher --file …'`. Answers `get` for https on
    /// the host of the API the token is for (github.com, or the GHES host) with username
    /// x-access-token; prints nothing for other hosts so git asks the next helper; with an
    /// expired token says so on stderr and gives nothing. Always exits 0.
    GitCredential(GitCredentialArgs),
    /// Inside a container: print the token (for GH_TOKEN=$(…)); exit 1 if it is expired
    /// or expires within --min-remaining
    Token(TokenArgs),
    /// Inside a container: run a command with GH_TOKEN and GITHUB_TOKEN set from the file
    ///
    /// This process is replaced by COMMAND (exec), so its exit status and signals are
    /// COMMAND's own. Refuses, like `token`, a token that is expired or expires within
    /// --min-remaining; exits 127 if COMMAND is not found, 126 if it can't be run.
    Exec(ExecArgs),
    /// Inside a container: run a hook each time a new token lands in the file
    ///
    /// Runs `sh -c HOOK` with GH_TOKEN, GITHUB_TOKEN, GITHUB_TOKEN_EXPIRES_AT and
    /// GITHUB_TOKEN_FILE in its environment (never on its command line): once at start if
    /// the file holds a valid token, then whenever the file holds a token different from
    /// the last one the hook saw (compared by content). Uses inotify on the file's
    /// directory, debounced; with --socket instead asks the daemon's socket every --poll.
    /// Warns on stderr when the token expires without a successor.
    Watch(WatchArgs),
}

/// `--file`, shared by every consumer command.
#[derive(clap::Args, Debug, Clone)]
pub struct FileArg {
    /// The token file the host's daemon writes. Mount its DIRECTORY into the container,
    /// not the file: a file bind mount keeps showing the old inode after the daemon's
    /// atomic rename
    #[arg(
        long,
        env = "GITHUB_TOKEN_FILE",
        value_name = "PATH",
        required_unless_present = "socket",
        conflicts_with = "socket"
    )]
    pub file: Option<PathBuf>,
    /// Instead of --file: ask the host daemon's socket (pull mode; see docs/pull-mode.md)
    #[arg(long, env = "GITHUB_TOKEN_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

impl FileArg {
    /// The file or the socket.
    pub fn path(&self) -> &Path {
        self.file
            .as_deref()
            .or(self.socket.as_deref())
            .expect("clap requires one")
    }
}

/// The token at `path`: a token file, or the daemon's socket (narrowed to `repositories`).
fn read(path: &Path, repositories: Option<&str>) -> Result<TokenFile, ReadError> {
    if socket::is_socket(path) {
        socket::fetch(path, repositories)
    } else {
        token_file::read_following(path)
    }
}

/// `--min-remaining`, for the commands that hand the token to something that will use it
/// for a while.
#[derive(clap::Args, Debug, Clone)]
pub struct MinRemainingArg {
    /// Treat a token with less than this left as unusable (git-credential: still answer,
    /// with a warning)
    #[arg(
        long,
        env = "GITHUB_TOKEN_MIN_REMAINING",
        value_name = "DURATION",
        default_value = DEFAULT_MIN_REMAINING,
        value_parser = parse_duration,
    )]
    pub min_remaining: Duration,
}

#[derive(clap::Args, Debug)]
pub struct GitCredentialArgs {
    #[command(flatten)]
    pub file: FileArg,
    #[command(flatten)]
    pub min_remaining: MinRemainingArg,
    /// The operation git appends: get (answered), store and erase (ignored), anything else
    /// (ignored, as the protocol asks)
    #[arg(value_name = "OPERATION")]
    pub operation: String,
}

#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    #[command(flatten)]
    pub file: FileArg,
    #[command(flatten)]
    pub min_remaining: MinRemainingArg,
    /// Wait up to this long for a usable token to appear (for a sandbox that starts before
    /// the host's first mint). Uses inotify on the directory
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Option<Duration>,
}

#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    #[command(flatten)]
    pub file: FileArg,
    #[command(flatten)]
    pub min_remaining: MinRemainingArg,
    /// Wait up to this long for a usable token to appear, as `token --wait`
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Option<Duration>,
    /// The command and its arguments (after `--`)
    #[arg(
        value_name = "COMMAND",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    pub file: FileArg,
    /// Shell command run (`sh -c`) for each new token; the token is in its environment
    /// as GH_TOKEN and GITHUB_TOKEN
    #[arg(long = "exec", value_name = "HOOK")]
    pub hook: String,
    /// Wait for the file to be quiet this long before reading it after a change
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = parse_duration)]
    pub debounce: Duration,
    /// Don't run the hook at start for the token already in the file
    #[arg(long)]
    pub skip_initial: bool,
    /// With --socket: ask the socket this often (a refreshed token is seen within this long)
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    pub poll: Duration,
}

/// Run a consumer command; the result is the process exit status.
pub fn run(cmd: ConsumerCommand) -> i32 {
    match cmd {
        ConsumerCommand::GitCredential(args) => git_credential(&args),
        ConsumerCommand::Token(args) => token(&args),
        ConsumerCommand::Exec(args) => exec(args),
        ConsumerCommand::Watch(args) => watch(&args),
    }
}

#[derive(Parser, Debug)]
#[command(
    name = GIT_CREDENTIAL_NAME,
    version,
    about = "git credential helper answering from a github-token-refresher token file",
    long_about = "git credential helper answering from a github-token-refresher token file.\n\n\
        Set it up with `git config --global credential.https://github.com.helper \
        'github-token-refresher --file /run/github-token/token.json'` (git runs \
        git-credential-github-token-refresher). Answers `get` for https on the API's host \
        with username x-access-token; ignores store and erase; always exits 0."
)]
struct GitCredentialCli {
    #[command(flatten)]
    args: GitCredentialArgs,
}

/// Entry point when the binary is invoked as `git-credential-github-token-refresher`
/// (argv\[0\]'s basename); `args` is the whole argv.
pub fn git_credential_main(args: Vec<OsString>) -> i32 {
    match GitCredentialCli::try_parse_from(args) {
        Ok(cli) => git_credential(&cli.args),
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() { EXIT_USAGE } else { EXIT_OK }
        }
    }
}

// ---------------------------------------------------------------------------------------
// shared checks and messages

fn say(msg: impl std::fmt::Display) {
    eprintln!("{PREFIX}: {msg}");
}

/// "1h 5m", "4m 30s", "45s": how long, for people.
fn human(secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

const HOST_HINT: &str = "is github-token-refresher running on the host? (systemctl --user status github-token-refresher)";

fn expired_message(path: &Path, file: &TokenFile, now: DateTime<Utc>) -> String {
    format!(
        "the token in '{}' expired {} ago (at {}) and has not been replaced; {HOST_HINT}",
        path.display(),
        human(now.timestamp() - file.expires_at_unix),
        file.expires_at,
    )
}

fn expiring_message(path: &Path, file: &TokenFile, now: DateTime<Utc>) -> String {
    format!(
        "the token in '{}' expires in {} (at {}) and has not been replaced yet; {HOST_HINT}",
        path.display(),
        human(file.expires_at_unix - now.timestamp()),
        file.expires_at,
    )
}

fn read_error_message(err: &ReadError) -> String {
    match err {
        ReadError::Missing(_) => format!(
            "{err}; {HOST_HINT} Is its directory mounted here (mount the directory, not the file)?"
        ),
        ReadError::Unreadable { source, .. }
            if source.kind() == io::ErrorKind::PermissionDenied =>
        {
            format!(
                "{err}; the daemon writes it mode 0600 for its own user, so read it as the \
                 same uid (docker run --user \"$(id -u):$(id -g)\")"
            )
        }
        _ => err.to_string(),
    }
}

/// A token is sent as an environment variable, an HTTP header and a line of git's
/// credential protocol: anything but visible ASCII would break (or inject into) those.
/// The rule is the daemon's ([`crate::secret::check_token`]), so a file the daemon would never
/// write is never used.
fn check_token_text(token: &Secret) -> Result<(), String> {
    crate::secret::check_token(token.expose()).map_err(|why| format!("{why}; refusing to use it"))
}

/// The warning for a token file whose mode lets users other than its owner read it.
fn exposure_warning(path: &Path, mode: u32) -> Option<String> {
    let who = match (mode & 0o040 != 0, mode & 0o004 != 0) {
        (false, false) => return None,
        (true, false) => "its group",
        (false, true) => "all users",
        (true, true) => "its group and all users",
    };
    Some(format!(
        "warning: token file '{}' is readable by {who} (mode {:04o}); the daemon writes it \
         0600 — check who changed it, and chmod 600 it",
        path.display(),
        mode & 0o7777
    ))
}

fn warn_if_exposed(path: &Path) {
    if let Ok(meta) = fs::metadata(path)
        && let Some(w) = exposure_warning(path, meta.mode())
    {
        say(w);
    }
}

/// Why there is no usable token right now.
#[derive(Debug)]
enum Unusable {
    Read(ReadError),
    Bad(String),
    Expired(String),
    Expiring(String),
}

impl Unusable {
    fn message(&self) -> String {
        match self {
            Unusable::Read(e) => read_error_message(e),
            Unusable::Bad(m) | Unusable::Expired(m) => m.clone(),
            Unusable::Expiring(m) => format!("{m} (less than --min-remaining)"),
        }
    }
}

/// Read `path` and accept its token only with at least `min_remaining` left.
fn usable_token(
    path: &Path,
    min_remaining: Duration,
    now: DateTime<Utc>,
) -> Result<TokenFile, Unusable> {
    let file = read(path, None).map_err(Unusable::Read)?;
    check_token_text(&file.token)
        .map_err(|r| Unusable::Bad(format!("token file '{}': {r}", path.display())))?;
    match file.freshness(now, min_remaining.as_secs() as i64) {
        Freshness::Valid { .. } => Ok(file),
        Freshness::Expiring { .. } => Err(Unusable::Expiring(expiring_message(path, &file, now))),
        Freshness::Expired { .. } => Err(Unusable::Expired(expired_message(path, &file, now))),
    }
}

/// [`usable_token`], waiting up to `wait` for one to appear.
fn usable_token_waiting(
    path: &Path,
    min_remaining: Duration,
    wait: Option<Duration>,
) -> Result<TokenFile, Unusable> {
    let first = usable_token(path, min_remaining, Utc::now());
    let Some(wait) = wait else { return first };
    if first.is_ok() {
        return first;
    }
    let deadline = Instant::now() + wait;
    // watch before looking again, so a publish between the look and the wait is not missed
    let mut watcher = match DirWatcher::new(path) {
        Ok(w) => w,
        Err(e) => {
            say(format!("cannot wait for '{}': {e}", path.display()));
            return first;
        }
    };
    say(format!(
        "no usable token in '{}' yet ({}); waiting up to {}",
        path.display(),
        short_reason(first.as_ref().err()),
        human(wait.as_secs() as i64)
    ));
    loop {
        let result = usable_token(path, min_remaining, Utc::now());
        if result.is_ok() {
            return result;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return result;
        }
        if let Err(e) = watcher.wait(Some(left)) {
            say(format!("cannot wait for '{}': {e}", path.display()));
            return result;
        }
    }
}

fn short_reason(u: Option<&Unusable>) -> &'static str {
    match u {
        Some(Unusable::Read(ReadError::Missing(_))) => "no file",
        Some(Unusable::Read(_)) | Some(Unusable::Bad(_)) => "unreadable",
        Some(Unusable::Expired(_)) => "expired",
        Some(Unusable::Expiring(_)) => "expiring",
        None => "ok",
    }
}

// ---------------------------------------------------------------------------------------
// the commands

fn git_credential(args: &GitCredentialArgs) -> i32 {
    let stdin = io::stdin();
    let request = match credential::read_request(&mut stdin.lock()) {
        Ok(r) => r,
        Err(e) => {
            say(format!("git-credential: cannot read the request: {e}"));
            return EXIT_OK;
        }
    };
    if args.operation != "get" {
        return EXIT_OK;
    }
    // not even https: nothing to read the file for
    if !request
        .protocol
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
    {
        return EXIT_OK;
    }
    let path = args.file.path();
    let Some(file) = read_for_git(path, &request) else {
        return EXIT_OK;
    };
    let decision = credential::decide(
        &request,
        &file,
        path,
        Utc::now(),
        args.min_remaining.min_remaining.as_secs() as i64,
    );
    answer_git(decision, path);
    EXIT_OK
}

/// The token for git's request: the file, or with credential.useHttpPath and a socket at
/// the path, a token narrowed to the repository git names (a file holds one token for
/// all). `None` after saying why on stderr.
fn read_for_git(path: &Path, request: &credential::Request) -> Option<TokenFile> {
    let read_or_say = |repo| {
        read(path, repo)
            .map_err(|e| say(format!("git-credential: {}", read_error_message(&e))))
            .ok()
    };
    let file = read_or_say(None)?;
    let repo = request
        .path
        .as_deref()
        .and_then(|p| p.trim_end_matches('/').rsplit('/').next())
        .map(|n| n.trim_end_matches(".git"))
        .filter(|n| !n.is_empty());
    match repo.filter(|_| socket::is_socket(path) && credential::is_ours(request, &file)) {
        Some(repo) => read_or_say(Some(repo)),
        None => Some(file),
    }
}

/// Tell git the decision (stdout) and the person at the terminal any refusal (stderr).
fn answer_git(decision: credential::Decision, path: &Path) {
    match decision {
        credential::Decision::NotOurs => {}
        credential::Decision::Refuse(msg) => {
            warn_if_exposed(path);
            say(format!("git-credential: {msg}"));
        }
        credential::Decision::Answer {
            password,
            expiry_unix,
            warning,
        } => {
            warn_if_exposed(path);
            if let Some(w) = warning {
                say(format!("git-credential: warning: {w}"));
            }
            if let Err(e) =
                credential::write_answer(&mut io::stdout().lock(), &password, expiry_unix)
            {
                say(format!("git-credential: cannot answer git: {e}"));
            }
        }
    }
}

/// What `token` and `exec` start with: the usable token (waiting up to `--wait`), with the
/// exposure warning; or, having said why there is none, the exit status.
fn usable_or_exit(
    path: &Path,
    min_remaining: &MinRemainingArg,
    wait: Option<Duration>,
) -> Result<TokenFile, i32> {
    match usable_token_waiting(path, min_remaining.min_remaining, wait) {
        Ok(file) => {
            warn_if_exposed(path);
            Ok(file)
        }
        Err(u) => {
            say(u.message());
            Err(EXIT_NO_TOKEN)
        }
    }
}

fn token(args: &TokenArgs) -> i32 {
    let path = args.file.path();
    let file = match usable_or_exit(path, &args.min_remaining, args.wait) {
        Ok(f) => f,
        Err(status) => return status,
    };
    let line = zeroize::Zeroizing::new(format!("{}\n", file.token.expose()));
    let mut out = io::stdout().lock();
    match out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            say(format!("cannot write the token to stdout: {e}"));
            EXIT_NO_TOKEN
        }
    }
}

/// The environment a command gets the token in: `GH_TOKEN`/`GITHUB_TOKEN` (gh, most
/// tools), its expiry and the file. A token for another host than github.com (GHES,
/// ghe.com) also goes in gh's `GH_ENTERPRISE_TOKEN`/`GITHUB_ENTERPRISE_TOKEN`, with
/// `GH_HOST` naming that host, because gh reads GH_TOKEN for github.com only.
fn token_env_vars(path: &Path, file: &TokenFile) -> Vec<(&'static str, OsString)> {
    let token = OsString::from(file.token.expose());
    let mut vars = vec![
        ("GH_TOKEN", token.clone()),
        ("GITHUB_TOKEN", token.clone()),
        ("GITHUB_TOKEN_EXPIRES_AT", file.expires_at.clone().into()),
        ("GITHUB_TOKEN_FILE", path.as_os_str().to_owned()),
    ];
    if let Some(host) = git_host_for_api(&file.api_url).filter(|h| h != "github.com") {
        vars.push(("GH_ENTERPRISE_TOKEN", token.clone()));
        vars.push(("GITHUB_ENTERPRISE_TOKEN", token));
        vars.push(("GH_HOST", host.into()));
    }
    vars
}

fn token_env(cmd: &mut Command, path: &Path, file: &TokenFile) {
    cmd.envs(token_env_vars(path, file));
}

fn exec(args: ExecArgs) -> i32 {
    let path = args.file.path();
    let file = match usable_or_exit(path, &args.min_remaining, args.wait) {
        Ok(f) => f,
        Err(status) => return status,
    };
    let (program, rest) = args.command.split_first().expect("clap requires a command");
    let mut cmd = Command::new(program);
    cmd.args(rest);
    token_env(&mut cmd, path, &file);
    // only returns on failure; on success CMD's status and signals are this process's
    let err = cmd.exec();
    say(format!("cannot run '{}': {err}", program.to_string_lossy()));
    if err.kind() == io::ErrorKind::NotFound {
        EXIT_NOT_FOUND
    } else {
        EXIT_CANNOT_EXECUTE
    }
}

/// `watch --socket` asks no more often than this.
const MIN_POLL: Duration = Duration::from_millis(100);

/// Longest a burst of writes can hold off reading the file.
const MAX_SETTLE: Duration = Duration::from_secs(5);

fn watch(args: &WatchArgs) -> i32 {
    let path = args.file.path();
    if args.file.socket.is_some() {
        return watch_socket(args);
    }
    let mut watcher = match DirWatcher::new(path) {
        Ok(w) => w,
        Err(e) => {
            say(format!("watch: {e}"));
            return EXIT_NO_TOKEN;
        }
    };
    if !watcher.is_watching() {
        say(format!(
            "watch: directory of '{}' does not exist yet; looking for it every second",
            path.display()
        ));
    }
    let mut state = WatchState::default();
    let mut first = true;
    loop {
        let now = Utc::now();
        let event = state.observe(path, token_file::read_following(path), now);
        react(event, first, args, path);
        if state.exposure_check() {
            warn_if_exposed(path);
        }
        first = false;
        // sleep until something changes, or until the current token expires (to say so)
        let timeout = state
            .wake_for_expiry(now)
            .map(|secs| Duration::from_secs(secs.max(0) as u64 + 1));
        match watcher.wait(timeout) {
            Ok(Wake::Changed) => {
                if let Err(e) = watcher.settle(args.debounce, MAX_SETTLE) {
                    say(format!("watch: {e}"));
                    return EXIT_NO_TOKEN;
                }
            }
            Ok(Wake::Timeout) => {}
            Err(e) => {
                say(format!("watch: {e}"));
                return EXIT_NO_TOKEN;
            }
        }
    }
}

/// Run the hook for a new token, or say what there is to say.
fn react(event: Observed, first: bool, args: &WatchArgs, path: &Path) {
    match event {
        Observed::New(file) => {
            if first && args.skip_initial {
                say(
                    "watch: a valid token is present; --skip-initial, so not running the hook for it",
                );
            } else {
                run_hook(&args.hook, path, &file);
            }
        }
        Observed::Note(msg) => say(format!("watch: {msg}")),
        Observed::Nothing => {}
    }
}

/// `watch --socket`: a socket cannot be watched with inotify, so ask it every `--poll`
/// (and when the token expires, to say so). The daemon hands out the same cached token
/// until its refresh time, so a new one is seen within one poll of being minted; asking
/// keeps the daemon refreshing it, which is what a watcher wants. A daemon that is down
/// is said once and asked again at the next poll; like the file, this runs until killed.
fn watch_socket(args: &WatchArgs) -> i32 {
    let path = args.file.path();
    if args.poll < MIN_POLL {
        say(format!(
            "--poll {:?} is too short: every poll is a request the daemon answers and audits; \
             use at least {MIN_POLL:?} (1m is plenty: a refreshed token stays valid far longer)",
            args.poll
        ));
        return EXIT_USAGE;
    }
    let mut state = WatchState::default();
    let mut first = true;
    loop {
        let now = Utc::now();
        let event = state.observe(path, socket::fetch(path, None), now);
        react(event, first, args, path);
        first = false;
        let wait = state.wake_for_expiry(now).map_or(args.poll, |secs| {
            Duration::from_secs(secs.max(0) as u64 + 1).min(args.poll)
        });
        std::thread::sleep(wait);
    }
}

/// What one look at the file means for the hook.
#[derive(Debug)]
enum Observed {
    /// A valid token the hook hasn't seen: run it.
    New(Box<TokenFile>),
    /// Something to say (once per situation).
    Note(String),
    Nothing,
}

/// The watch loop's memory: the last token handed to the hook (compared by content, never
/// by a hash that two programs might compute differently), and what was already said.
#[derive(Default)]
struct WatchState {
    last: Option<Secret>,
    last_expiry: Option<i64>,
    said: Option<String>,
    warned_expired_for: Option<Secret>,
    last_mode_checked: Option<Secret>,
}

impl WatchState {
    fn observe(
        &mut self,
        path: &Path,
        read: Result<TokenFile, ReadError>,
        now: DateTime<Utc>,
    ) -> Observed {
        let file = match read {
            Ok(f) => f,
            Err(e) => {
                // the daemon's writes are atomic, so this is a real state, not a torn read
                return self.note(read_error_message(&e));
            }
        };
        if let Err(reason) = check_token_text(&file.token) {
            return self.note(format!("token file: {reason}"));
        }
        let expired = matches!(file.freshness(now, 0), Freshness::Expired { .. });
        let is_new = self.last.as_ref() != Some(&file.token);
        if is_new && !expired {
            self.last = Some(file.token.clone());
            self.last_expiry = Some(file.expires_at_unix);
            self.said = None;
            return Observed::New(Box::new(file));
        }
        if expired && self.warned_expired_for.as_ref() != Some(&file.token) {
            self.warned_expired_for = Some(file.token.clone());
            self.said = None;
            return Observed::Note(expired_message(path, &file, now));
        }
        Observed::Nothing
    }

    /// Say `msg` unless it was the last thing said.
    fn note(&mut self, msg: String) -> Observed {
        if self.said.as_deref() == Some(msg.as_str()) {
            return Observed::Nothing;
        }
        self.said = Some(msg.clone());
        Observed::Note(msg)
    }

    /// Seconds until the last token expires, while its expiry hasn't been reported.
    fn wake_for_expiry(&self, now: DateTime<Utc>) -> Option<i64> {
        let expiry = self.last_expiry?;
        if self.warned_expired_for.is_some() && self.warned_expired_for == self.last {
            return None;
        }
        Some(expiry - now.timestamp())
    }

    /// Check the file's mode once per token.
    fn exposure_check(&mut self) -> bool {
        if self.last.is_some() && self.last_mode_checked != self.last {
            self.last_mode_checked = self.last.clone();
            return true;
        }
        false
    }
}

fn run_hook(hook: &str, path: &Path, file: &TokenFile) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(hook).stdin(Stdio::null());
    token_env(&mut cmd, path, file);
    say(format!(
        "watch: new token (expires {}); running hook",
        file.expires_at
    ));
    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => say(format!(
            "watch: hook {}; it runs again with the next token",
            describe_status(status)
        )),
        Err(e) => say(format!("watch: cannot run the hook with sh: {e}")),
    }
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => format!("ended with {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::t0 as now;
    use clap::CommandFactory;

    fn file_with(token: &str, expires: i64) -> TokenFile {
        let mut f = TokenFile::parse(&format!(
            r#"{{"token":"{token}","expires_at":"{}"}}"#,
            token_file::rfc3339(DateTime::from_timestamp(expires, 0).unwrap())
        ))
        .unwrap();
        f.expires_at_unix = expires;
        f
    }

    #[derive(Parser, Debug)]
    struct TestCli {
        #[command(subcommand)]
        cmd: ConsumerCommand,
    }

    #[test]
    fn cli_definitions_are_consistent() {
        TestCli::command().debug_assert();
        GitCredentialCli::command().debug_assert();
    }

    #[test]
    fn clap_names_and_defaults() {
        let cli =
            TestCli::try_parse_from(["x", "token", "--file", "/t.json", "--wait", "2m"]).unwrap();
        match cli.cmd {
            ConsumerCommand::Token(a) => {
                assert_eq!(a.file.path(), Path::new("/t.json"));
                assert_eq!(a.wait, Some(Duration::from_secs(120)));
                assert_eq!(a.min_remaining.min_remaining, Duration::from_secs(600));
            }
            other => panic!("{other:?}"),
        }
        let cli = TestCli::try_parse_from(["x", "exec", "--file", "/t", "--", "gh", "-R", "a/b"])
            .unwrap();
        match cli.cmd {
            ConsumerCommand::Exec(a) => assert_eq!(a.command, ["gh", "-R", "a/b"]),
            other => panic!("{other:?}"),
        }
        let cli = TestCli::try_parse_from(["x", "exec", "--file", "/t", "env", "-i"]).unwrap();
        assert!(matches!(cli.cmd, ConsumerCommand::Exec(a) if a.command == ["env", "-i"]));
        assert!(TestCli::try_parse_from(["x", "exec", "--file", "/t"]).is_err());
        let cli =
            TestCli::try_parse_from(["x", "watch", "--file", "/t", "--exec", "echo hi"]).unwrap();
        assert!(
            matches!(cli.cmd, ConsumerCommand::Watch(a) if a.debounce == Duration::from_millis(500) && a.hook == "echo hi")
        );
        let cli = TestCli::try_parse_from(["x", "git-credential", "--file", "/t", "get"]).unwrap();
        assert!(matches!(cli.cmd, ConsumerCommand::GitCredential(a) if a.operation == "get"));
        // how git runs the installed helper: its arguments, then the operation
        let cli = GitCredentialCli::try_parse_from([GIT_CREDENTIAL_NAME, "--file", "/t", "store"])
            .unwrap();
        assert_eq!(cli.args.operation, "store");
    }

    #[test]
    fn the_token_environment_for_github_com_and_for_ghes() {
        let names = |f: &TokenFile| -> Vec<(&'static str, String)> {
            token_env_vars(Path::new("/s/token.json"), f)
                .into_iter()
                .map(|(k, v)| (k, v.to_string_lossy().into_owned()))
                .collect()
        };
        let mut f = file_with("ghs_env", now().timestamp() + 3600);
        f.api_url = "https://api.github.com".into();
        let vars = names(&f);
        assert_eq!(
            vars.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            [
                "GH_TOKEN",
                "GITHUB_TOKEN",
                "GITHUB_TOKEN_EXPIRES_AT",
                "GITHUB_TOKEN_FILE"
            ]
        );
        assert_eq!(vars[0].1, "ghs_env");
        assert_eq!(vars[2].1, f.expires_at);
        assert_eq!(vars[3].1, "/s/token.json");
        f.api_url = "https://ghe.example.com/api/v3".into();
        let vars = names(&f);
        assert!(vars.contains(&("GH_ENTERPRISE_TOKEN", "ghs_env".into())));
        assert!(vars.contains(&("GITHUB_ENTERPRISE_TOKEN", "ghs_env".into())));
        assert!(vars.contains(&("GH_HOST", "ghe.example.com".into())));
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(human(45), "45s");
        assert_eq!(human(90), "1m 30s");
        assert_eq!(human(600), "10m");
        assert_eq!(human(3600), "1h");
        assert_eq!(human(3900), "1h 5m");
        assert_eq!(human(-5), "0s");
    }

    #[test]
    fn exposure_warnings() {
        let p = Path::new("/s/token.json");
        assert_eq!(exposure_warning(p, 0o100600), None);
        assert_eq!(exposure_warning(p, 0o100400), None);
        assert_eq!(
            exposure_warning(p, 0o100620),
            None,
            "group-writable is not group-readable"
        );
        assert!(
            exposure_warning(p, 0o100640)
                .unwrap()
                .contains("by its group (mode 0640)")
        );
        assert!(
            exposure_warning(p, 0o100604)
                .unwrap()
                .contains("by all users (mode 0604)")
        );
        assert!(
            exposure_warning(p, 0o100644)
                .unwrap()
                .contains("its group and all users")
        );
    }

    #[test]
    fn token_text_must_be_visible_ascii() {
        assert!(check_token_text(&Secret::new("ghs_AbC123")).is_ok());
        assert!(check_token_text(&Secret::new("ghs_a\nb")).is_err());
        assert!(check_token_text(&Secret::new("ghs a")).is_err());
        assert!(check_token_text(&Secret::new("ghs_\u{0}")).is_err());
        assert!(check_token_text(&Secret::new("ghs_é")).is_err());
    }

    #[test]
    fn usable_token_bands() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        assert!(matches!(
            usable_token(&path, Duration::from_secs(600), now()),
            Err(Unusable::Read(ReadError::Missing(_)))
        ));
        let t = now().timestamp();
        let write = |f: &TokenFile| fs::write(&path, serde_json::to_string(f).unwrap()).unwrap();
        write(&file_with("ghs_x", t + 3600));
        assert!(usable_token(&path, Duration::from_secs(600), now()).is_ok());
        write(&file_with("ghs_x", t + 300));
        let e = usable_token(&path, Duration::from_secs(600), now()).unwrap_err();
        assert!(matches!(e, Unusable::Expiring(_)));
        assert!(e.message().contains("expires in 5m"), "{}", e.message());
        assert!(usable_token(&path, Duration::from_secs(60), now()).is_ok());
        write(&file_with("ghs_x", t - 10));
        let e = usable_token(&path, Duration::ZERO, now()).unwrap_err();
        assert!(e.message().contains("expired 10s ago"), "{}", e.message());
        assert!(!e.message().contains("ghs_x"));
    }

    fn tp() -> &'static Path {
        Path::new("/s/token.json")
    }

    #[test]
    fn watch_state_runs_the_hook_once_per_token_content() {
        let mut s = WatchState::default();
        let t = now().timestamp();
        assert!(matches!(
            s.observe(tp(), Ok(file_with("ghs_a", t + 3600)), now()),
            Observed::New(_)
        ));
        // same token rewritten (e.g. a new generation with the same value): no hook
        let mut same = file_with("ghs_a", t + 3600);
        same.generation = 7;
        assert!(matches!(
            s.observe(tp(), Ok(same), now()),
            Observed::Nothing
        ));
        assert!(
            matches!(s.observe(tp(), Ok(file_with("ghs_b", t + 3600)), now()), Observed::New(f) if f.token.expose() == "ghs_b")
        );
        // back to an older token is still "different from the last one"
        assert!(matches!(
            s.observe(tp(), Ok(file_with("ghs_a", t + 3600)), now()),
            Observed::New(_)
        ));
    }

    #[test]
    fn watch_state_reports_problems_once_and_never_hooks_an_expired_token() {
        let mut s = WatchState::default();
        let t = now().timestamp();
        let missing = || Err(ReadError::Missing(PathBuf::from("/s/token.json")));
        assert!(matches!(
            s.observe(tp(), missing(), now()),
            Observed::Note(_)
        ));
        assert!(matches!(
            s.observe(tp(), missing(), now()),
            Observed::Nothing
        ));
        match s.observe(tp(), Ok(file_with("ghs_old", t - 60)), now()) {
            Observed::Note(m) => assert!(m.contains("expired 1m ago"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            s.observe(tp(), Ok(file_with("ghs_old", t - 60)), now()),
            Observed::Nothing
        ));
        assert!(matches!(
            s.observe(tp(), Ok(file_with("ghs_new", t + 3600)), now()),
            Observed::New(_)
        ));
        // the hooked token expiring without a successor is said once, then no more wakeups
        assert_eq!(s.wake_for_expiry(now()), Some(3600));
        let later = now() + chrono::Duration::seconds(3601);
        assert!(matches!(
            s.observe(tp(), Ok(file_with("ghs_new", t + 3600)), later),
            Observed::Note(_)
        ));
        assert_eq!(s.wake_for_expiry(later), None);
        assert!(matches!(
            s.observe(tp(), Ok(file_with("ghs_new", t + 3600)), later),
            Observed::Nothing
        ));
    }

    #[test]
    fn messages_name_the_path_and_never_the_token() {
        let p = Path::new("/s/token.json");
        let f = file_with("ghs_secret", now().timestamp() - 3700);
        let m = expired_message(p, &f, now());
        assert!(
            m.contains("'/s/token.json'") && m.contains("1h 1m ago") && !m.contains("ghs_secret"),
            "{m}"
        );
        let m = read_error_message(&ReadError::Missing(p.to_owned()));
        assert!(m.contains("mount the directory"), "{m}");
    }
}
