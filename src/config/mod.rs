//! Configuration: the raw values from flags and environment (see `cli`) are validated here
//! into a [`Config`] by pure functions, so that every mistake gets one clear line naming the
//! setting as the user gave it (its flag, or the variable it came from) and the fix. Loading
//! the private key (I/O) lives in `jwt`. Reused on SIGHUP.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::durations::{
    DEFAULT_HTTP_TIMEOUT, DEFAULT_JITTER, DEFAULT_MIN_REMAINING, DEFAULT_REFRESH_INTERVAL,
    format_duration, parse_duration,
};
use crate::revoke::Revocation;
use crate::schedule::Policy;
use crate::token_file::FileOptions;

pub mod env_file;
pub mod file;
pub mod settings;

pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// Where systemd's `LoadCredential=github-app.pem:…` puts the key.
pub const CREDENTIAL_NAME: &str = "github-app.pem";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl From<crate::jwt::KeyError> for ConfigError {
    fn from(e: crate::jwt::KeyError) -> Self {
        ConfigError(e.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Raw values as the user gave them (flags or environment), before any checking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawConfig {
    pub app_id: Option<String>,
    pub private_key_file: Option<PathBuf>,
    pub installation_id: Option<String>,
    pub owner: Option<String>,
    pub repo: Option<String>,
    pub repositories: Option<String>,
    pub permissions: Option<String>,
    pub output: Option<PathBuf>,
    pub api_url: Option<String>,
    pub refresh_interval: Option<String>,
    pub jitter: Option<String>,
    pub min_remaining: Option<String>,
    pub http_timeout: Option<String>,
    pub revoke_on_stop: Option<String>,
    pub revoke_superseded_after: Option<String>,
    pub socket: Option<PathBuf>,
    /// Which of them came from the environment rather than the command line.
    pub origins: Origins,
}

/// The parts of the host configuration depends on, looked up at the edge
/// ([`HostEnv::from_process`]) and passed in, so that parsing stays pure: no parser reads
/// the environment, tests whether a file exists or reads /etc/group.
#[derive(Debug, Clone)]
pub struct HostEnv {
    pub xdg_runtime_dir: Option<PathBuf>,
    /// systemd's credential `$CREDENTIALS_DIRECTORY/github-app.pem`, when it exists.
    pub credential_key: Option<PathBuf>,
    /// A group name's gid (the system's group database in the process).
    pub lookup_group: fn(&str) -> Option<u32>,
}

impl Default for HostEnv {
    fn default() -> Self {
        HostEnv {
            xdg_runtime_dir: None,
            credential_key: None,
            lookup_group: |_| None,
        }
    }
}

/// The host environment every configuration unit test uses: a runtime directory, no
/// systemd credential, one group `agents` (gid 4242); one fixture for the flags and the
/// file tests.
#[cfg(test)]
pub(crate) fn test_env() -> HostEnv {
    HostEnv {
        xdg_runtime_dir: Some("/run/user/1000".into()),
        credential_key: None,
        lookup_group: |name| (name == "agents").then_some(4242),
    }
}

/// The gid of group `name` in /etc/group.
fn system_group(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            Some((f.next()?, f.nth(1)?))
        })
        .find(|(n, _)| *n == name)
        .and_then(|(_, gid)| gid.parse().ok())
}

impl HostEnv {
    /// The default token file: `$XDG_RUNTIME_DIR/github-token-refresher/token.json`, or
    /// `…/github-token-refresher/NAME/token.json` for a target of a file. The one place it is
    /// computed (`run`, `once`, `check`, `status`).
    pub fn default_output(&self, target: Option<&str>) -> Option<PathBuf> {
        let dir = self
            .xdg_runtime_dir
            .as_ref()?
            .join("github-token-refresher");
        Some(match target {
            Some(name) => dir.join(name).join("token.json"),
            None => dir.join("token.json"),
        })
    }

    pub fn from_process() -> Self {
        let path = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        HostEnv {
            xdg_runtime_dir: path("XDG_RUNTIME_DIR"),
            credential_key: path("CREDENTIALS_DIRECTORY")
                .map(|dir| dir.join(CREDENTIAL_NAME))
                .filter(|key| key.exists()),
            lookup_group: system_group,
        }
    }
}

/// Which installation of the App to mint for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InstallationRef {
    Id(u64),
    /// An organization or user account (`/orgs/{owner}/installation`, then `/users/…`).
    Owner(String),
    Repo {
        owner: String,
        name: String,
    },
}

impl std::fmt::Display for InstallationRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstallationRef::Id(id) => write!(f, "installation {id}"),
            InstallationRef::Owner(o) => write!(f, "the installation on {o}"),
            InstallationRef::Repo { owner, name } => {
                write!(f, "the installation on {owner}/{name}")
            }
        }
    }
}

/// The App to authenticate as.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppRef {
    /// The App ID (digits) or Client ID (`Iv…`), used as the JWT `iss` exactly as given.
    pub app_id: String,
    pub key_file: PathBuf,
}

/// One token file to keep fresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub app: AppRef,
    pub api_url: String,
    pub installation: InstallationRef,
    pub repositories: Vec<String>,
    pub permissions: BTreeMap<String, String>,
    pub output: PathBuf,
    /// The daemon keeps `output` fresh. False for a socket-only target (pull mode, minted
    /// on demand), whose `output` is empty.
    pub writes_file: bool,
    /// Serve tokens on this Unix socket (pull mode, `crate::pull`).
    pub socket: Option<PathBuf>,
    pub file: FileOptions,
    pub policy: Policy,
    pub revoke: Revocation,
}

/// Where the configuration came from: the two paths build the same [`Config`] and differ
/// only in what the daemon does on a reload and on a first failure (see the methods).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The single-target flags and environment.
    Flags,
    /// A TOML file of targets (`--config FILE`).
    File(PathBuf),
}

impl Source {
    /// SIGHUP mints every target at once: with flags nothing can have changed, so a reload
    /// is how a user asks for a fresh token now. A file's reload applies its changes only.
    pub fn reload_mints_every_target(&self) -> bool {
        matches!(self, Source::Flags)
    }

    /// At start, a still-valid token file keeps its schedule (a file of many targets should
    /// not mint them all on every restart); with flags the daemon mints at once.
    pub fn adopts_schedules_of_existing_files(&self) -> bool {
        matches!(self, Source::File(_))
    }

    /// A permanent failure (401, 404, …) before any token exists ends the daemon with
    /// exit 78: its one target can never work. With a file, the other targets keep going.
    pub fn first_permanent_failure_is_fatal(&self) -> bool {
        matches!(self, Source::Flags)
    }
}

/// The whole configuration, from flags or from a file: loaded once per start or reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub targets: Vec<Target>,
    pub http_timeout: Duration,
    pub source: Source,
    /// On reload, delete the token files of targets removed from the file.
    pub delete_removed_outputs: bool,
    /// `run` writes Prometheus metrics here (`--metrics-file`, or the file's `metrics_file`;
    /// the flag wins).
    pub metrics_file: Option<PathBuf>,
}

impl Config {
    /// The same settings for `target` alone.
    pub fn only(&self, target: &Target) -> Config {
        Config {
            targets: vec![target.clone()],
            http_timeout: self.http_timeout,
            source: self.source.clone(),
            delete_removed_outputs: self.delete_removed_outputs,
            metrics_file: self.metrics_file.clone(),
        }
    }
}

fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl RawConfig {
    /// How each setting is named in an error: its flag, or its variable where the
    /// environment gave it.
    fn spelling(&self) -> Spelling {
        Spelling::Flag(self.origins)
    }

    /// Validate into a single-target [`Config`]. Every setting is checked, so that one run
    /// reports every mistake: the error holds one line per problem.
    pub fn into_config(self, env: &HostEnv) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let app = self.app(env, &mut problems);
        let scope = self.scope(&mut problems);
        let delivery = self.delivery(env, &mut problems);
        let schedule = self.schedule(&mut problems);
        let http_timeout = keep(&mut problems, self.http_timeout());
        let revoke = self.revocation(&mut problems);
        let (
            Some(app),
            Some(scope),
            Some(delivery),
            Some(schedule),
            Some(http_timeout),
            Some(revoke),
        ) = (app, scope, delivery, schedule, http_timeout, revoke)
        else {
            return Err(ConfigError(problems.join("\n")));
        };
        let name = SINGLE_TARGET_NAME.to_owned();
        let parts = (scope, delivery, schedule, FileOptions::default(), revoke);
        Ok(Config {
            targets: vec![Target::from_parts(name, app, parts)],
            http_timeout,
            source: Source::Flags,
            delete_removed_outputs: false,
            metrics_file: None,
        })
    }

    fn app(&self, env: &HostEnv, problems: &mut Vec<String>) -> Option<AppRef> {
        let app_id = match present(&self.app_id) {
            Some(id) => parse_app_id(self.spelling(), id),
            None => err(
                "--app-id is missing: set --app-id or GITHUB_APP_ID to the App ID (digits) \
                 or Client ID (Iv…) from the App's settings page",
            ),
        };
        let app_id = keep(problems, app_id);
        let key_file = keep(
            problems,
            resolve_key_file(self.private_key_file.as_deref(), env),
        );
        Some(AppRef {
            app_id: app_id?,
            key_file: key_file?,
        })
    }

    fn scope(&self, problems: &mut Vec<String>) -> Option<Scope> {
        let installation = keep(
            problems,
            parse_installation(
                self.spelling(),
                present(&self.installation_id),
                present(&self.owner),
                present(&self.repo),
            ),
        );
        let owner_hint = match &installation {
            Some(InstallationRef::Owner(o) | InstallationRef::Repo { owner: o, .. }) => {
                Some(o.as_str())
            }
            Some(InstallationRef::Id(_)) | None => None,
        };
        let repositories = keep(
            problems,
            parse_repositories(
                self.spelling(),
                present(&self.repositories).unwrap_or("").split(','),
                owner_hint,
            ),
        );
        let permissions = keep(
            problems,
            permission_pairs(self.spelling(), present(&self.permissions).unwrap_or(""))
                .and_then(|pairs| parse_permissions(self.spelling(), pairs)),
        );
        Some(Scope {
            installation: installation?,
            repositories: repositories?,
            permissions: permissions?,
        })
    }

    fn delivery(&self, env: &HostEnv, problems: &mut Vec<String>) -> Option<Delivery> {
        let socket = match self.socket.as_deref().filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => keep(problems, check_socket_path(self.spelling(), p).map(Some)),
            None => Some(None),
        };
        // --socket alone serves on demand; with --output the file is kept fresh too
        let writes_file = !matches!(socket, Some(Some(_)))
            || self
                .output
                .as_ref()
                .is_some_and(|p| !p.as_os_str().is_empty());
        let output = if writes_file {
            keep(
                problems,
                resolve_output(self.spelling(), self.output.as_deref(), env),
            )
        } else {
            Some(PathBuf::new())
        };
        Some(Delivery {
            socket: socket?,
            writes_file,
            output: output?,
        })
    }

    fn schedule(&self, problems: &mut Vec<String>) -> Option<Schedule> {
        let api_url = keep(
            problems,
            parse_api_url(
                self.spelling(),
                present(&self.api_url).unwrap_or(DEFAULT_API_URL),
            ),
        );
        let policy = keep(
            problems,
            parse_policy(
                self.spelling(),
                present(&self.refresh_interval),
                present(&self.jitter),
                present(&self.min_remaining),
            ),
        );
        Some(Schedule {
            api_url: api_url?,
            policy: policy?,
        })
    }

    fn http_timeout(&self) -> Result<Duration, ConfigError> {
        let sp = self.spelling();
        let given = present(&self.http_timeout).unwrap_or(DEFAULT_HTTP_TIMEOUT);
        let t = parse_duration_of(sp, "http_timeout", given)?;
        if t < Duration::from_secs(1) {
            return err(format!("{} must be at least 1s", sp.of("http_timeout")));
        }
        Ok(t)
    }

    fn revocation(&self, problems: &mut Vec<String>) -> Option<Revocation> {
        let on_stop = match present(&self.revoke_on_stop) {
            None => Some(false),
            Some(v) => keep(
                problems,
                parse_bool(v).ok_or_else(|| {
                    ConfigError(format!(
                        "{}: expected true or false",
                        self.spelling().quoted("revoke_on_stop", v.escape_debug())
                    ))
                }),
            ),
        };
        let superseded_after = keep(
            problems,
            present(&self.revoke_superseded_after)
                .map(|s| crate::revoke::parse_superseded_after(self.spelling(), s))
                .transpose(),
        );
        Some(Revocation {
            on_stop: on_stop?,
            superseded_after: superseded_after?,
        })
    }
}

/// Which installation, and what the token may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub installation: InstallationRef,
    pub repositories: Vec<String>,
    pub permissions: BTreeMap<String, String>,
}

/// Where the token goes: a file, a socket, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub socket: Option<PathBuf>,
    pub writes_file: bool,
    pub output: PathBuf,
}

/// Where to ask and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub api_url: String,
    pub policy: Policy,
}

/// A target's checked parts, as both configuration paths produce them.
pub type TargetParts = (Scope, Delivery, Schedule, FileOptions, Revocation);

impl Target {
    /// The one place a [`Target`] is put together, for the flags and for the file.
    pub fn from_parts(name: String, app: AppRef, parts: TargetParts) -> Target {
        let (scope, delivery, schedule, file, revoke) = parts;
        Target {
            name,
            app,
            api_url: schedule.api_url,
            installation: scope.installation,
            repositories: scope.repositories,
            permissions: scope.permissions,
            output: delivery.output,
            writes_file: delivery.writes_file,
            socket: delivery.socket,
            file,
            policy: schedule.policy,
            revoke,
        }
    }
}

/// Which of the flags path's settings the environment gave (`GITHUB_APP_ID=…`) rather than
/// the command line (`--app-id …`): clap says so where it parses them (`cli::Cli::parse_args`),
/// and [`Spelling`] asks it when it names a setting in an error. A setting not given at all
/// counts as the command line's, so its messages name the flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origins {
    /// By the rows of [`settings::SETTINGS`]: true where the value came from the variable.
    from_env: [bool; settings::SETTINGS.len()],
}

impl Origins {
    /// Every setting from the command line (or not given).
    pub const COMMAND_LINE: Origins = Origins {
        from_env: [false; settings::SETTINGS.len()],
    };

    /// The same, with setting `name` (`app_id`) given by its environment variable.
    pub fn with_env(mut self, name: &str) -> Origins {
        if let Some(i) = settings::SETTINGS.iter().position(|s| s.name == name) {
            self.from_env[i] = true;
        }
        self
    }

    /// The variable that gave setting `name`, if the environment gave it.
    fn variable(&self, name: &str) -> Option<&'static str> {
        let i = settings::SETTINGS.iter().position(|s| s.name == name)?;
        self.from_env[i]
            .then_some(settings::SETTINGS[i].env)
            .flatten()
    }
}

impl Default for Origins {
    fn default() -> Self {
        Origins::COMMAND_LINE
    }
}

/// How the user wrote the settings a parser reads: as flags (`--app-id`) or their
/// environment variables (`GITHUB_APP_ID`), as [`Origins`] says for each, or as TOML keys
/// (`app_id`). Errors name a setting the way it was written, so no message is rewritten
/// afterwards. (A flag is the key with `-` for `_`: `settings` tests that.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    Flag(Origins),
    Key,
}

impl Spelling {
    /// Flags, every one from the command line.
    pub const FLAGS: Spelling = Spelling::Flag(Origins::COMMAND_LINE);

    /// `name` (a setting's name, `app_id`) as the user wrote it: `--app-id`, `GITHUB_APP_ID`
    /// or `app_id`. The one place a setting's name in an error is chosen.
    pub fn of(self, name: &str) -> String {
        match self {
            Spelling::Flag(origins) => match origins.variable(name) {
                Some(var) => var.to_owned(),
                None => format!("--{}", name.replace('_', "-")),
            },
            Spelling::Key => name.to_owned(),
        }
    }

    /// `name` with the value the user gave it, quoted as it was written: `--app-id 'abc'`,
    /// `GITHUB_APP_ID='abc'` (as in an environment file) or `app_id 'abc'`.
    pub fn quoted(self, name: &str, value: impl std::fmt::Display) -> String {
        let key = self.of(name);
        match self {
            Spelling::Flag(origins) if origins.variable(name).is_some() => {
                format!("{key}='{value}'")
            }
            _ => format!("{key} '{value}'"),
        }
    }
}

/// The name of the one target the flags describe; never shown to the user.
pub const SINGLE_TARGET_NAME: &str = "default";

/// The value, or `None` with its error added to `problems`.
pub(crate) fn keep<T>(problems: &mut Vec<String>, r: Result<T, ConfigError>) -> Option<T> {
    r.map_err(|e| problems.push(e.0)).ok()
}

impl ConfigError {
    /// One line per problem (the flags' validation reports all of them at once).
    pub fn problems(&self) -> impl Iterator<Item = &str> {
        self.0.lines().filter(|l| !l.trim().is_empty())
    }
}

/// App ID (digits) or Client ID (`Iv1.…`, `Iv23…`).
pub fn parse_app_id(sp: Spelling, id: &str) -> Result<String, ConfigError> {
    let digits = !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit());
    let client_id = id.starts_with("Iv")
        && id.len() > 4
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.');
    if digits || client_id {
        Ok(id.to_owned())
    } else {
        err(format!(
            "{}: expected the App ID (digits, e.g. 123456) or the Client ID (Iv…) from the \
             App's settings page",
            sp.quoted("app_id", id.escape_debug())
        ))
    }
}

fn resolve_key_file(flag: Option<&Path>, env: &HostEnv) -> Result<PathBuf, ConfigError> {
    if let Some(p) = flag.filter(|p| !p.as_os_str().is_empty()) {
        return Ok(p.to_owned());
    }
    if let Some(key) = &env.credential_key {
        return Ok(key.clone());
    }
    err(format!(
        "--private-key-file is missing: set --private-key-file or GITHUB_APP_PRIVATE_KEY_FILE to \
         the App's .pem key (or load it as systemd credential '{CREDENTIAL_NAME}')"
    ))
}

pub fn parse_installation(
    sp: Spelling,
    id: Option<&str>,
    owner: Option<&str>,
    repo: Option<&str>,
) -> Result<InstallationRef, ConfigError> {
    match (id, owner, repo) {
        (Some(id), None, None) => match id.parse::<u64>() {
            Ok(n) if n > 0 => Ok(InstallationRef::Id(n)),
            _ => err(format!(
                "{}: expected a number (the last part of the installation's settings URL); \
                 or use {} NAME or {} OWNER/NAME instead",
                sp.quoted("installation_id", id.escape_debug()),
                sp.of("owner"),
                sp.of("repo"),
            )),
        },
        (None, Some(owner), None) => {
            check_name(sp, "owner", owner)?;
            Ok(InstallationRef::Owner(owner.to_owned()))
        }
        (None, None, Some(repo)) => match repo.split_once('/') {
            Some((o, n)) if !o.is_empty() && !n.is_empty() && !n.contains('/') => {
                check_name(sp, "repo", o)?;
                check_name(sp, "repo", n)?;
                Ok(InstallationRef::Repo {
                    owner: o.to_owned(),
                    name: n.to_owned(),
                })
            }
            _ => err(format!(
                "{}: expected OWNER/NAME, e.g. acme/widgets",
                sp.quoted("repo", repo.escape_debug())
            )),
        },
        (None, None, None) if sp == Spelling::Key => {
            err("no installation given: set installation_id, owner or repo")
        }
        (None, None, None) => err(
            "no installation given: pass --installation-id N, --owner NAME or --repo OWNER/NAME \
             (or GITHUB_APP_INSTALLATION_ID, GITHUB_APP_OWNER, GITHUB_APP_REPO)",
        ),
        _ => err(format!(
            "{}, {} and {} choose the installation in different ways: give only one of them",
            sp.of("installation_id"),
            sp.of("owner"),
            sp.of("repo"),
        )),
    }
}

/// `name`, a part of setting `setting`'s value, is a GitHub account or repository name.
fn check_name(sp: Spelling, setting: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        err(format!(
            "{}: not a GitHub account or repository name (letters, digits, '-', '_', '.')",
            sp.quoted(setting, name.escape_debug())
        ))
    }
}

/// Repository names (a flag's `a,b` split by the caller). `OWNER/NAME` is accepted when
/// OWNER is the installation's owner.
pub fn parse_repositories<'a>(
    sp: Spelling,
    items: impl IntoIterator<Item = &'a str>,
    owner: Option<&str>,
) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for item in items.into_iter().map(str::trim).filter(|i| !i.is_empty()) {
        let name = match item.split_once('/') {
            Some((o, n)) if owner.is_none_or(|owner| owner.eq_ignore_ascii_case(o)) => n,
            Some(_) => {
                return err(format!(
                    "{}: list repository names without the owner (a token covers one \
                     installation's repositories)",
                    sp.quoted("repositories", item.escape_debug())
                ));
            }
            None => item,
        };
        check_name(sp, "repositories", name)?;
        if !out.iter().any(|r| r == name) {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

/// `contents=read,pull_requests=write` → pairs, for [`parse_permissions`].
pub fn permission_pairs(sp: Spelling, s: &str) -> Result<Vec<(&str, &str)>, ConfigError> {
    s.split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(|item| {
            item.split_once('=').ok_or_else(|| {
                ConfigError(format!(
                    "{}: expected NAME=LEVEL pairs, e.g. contents=read,pull_requests=write",
                    sp.quoted("permissions", item.escape_debug())
                ))
            })
        })
        .collect()
}

/// Permission names and levels → map.
pub fn parse_permissions<'a>(
    sp: Spelling,
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let key = sp.of("permissions");
    let mut out = BTreeMap::new();
    for (name, level) in pairs {
        let (name, level) = (name.trim(), level.trim());
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        if !name_ok {
            return err(format!(
                "{key}: '{}' is not a permission name (lowercase with '_', e.g. pull_requests)",
                name.escape_debug()
            ));
        }
        if !matches!(level, "read" | "write" | "admin") {
            return err(format!(
                "{key}: level '{}' for {name}: expected read, write or admin",
                level.escape_debug()
            ));
        }
        out.insert(name.to_owned(), level.to_owned());
    }
    Ok(out)
}

/// A socket path: a file name, short enough for `sockaddr_un` (108 bytes with its NUL).
pub fn check_socket_path(sp: Spelling, p: &Path) -> Result<PathBuf, ConfigError> {
    use std::os::unix::ffi::OsStrExt;
    let given = || sp.quoted("socket", p.display());
    if p.file_name().is_none() || p.as_os_str().as_bytes().ends_with(b"/") {
        return err(format!(
            "{}: name a socket file (e.g. {}/token.sock), not a directory",
            given(),
            p.display()
        ));
    }
    if p.as_os_str().len() > 107 {
        return err(format!(
            "{}: longer than the 107 bytes a Unix socket path may have; choose a shorter path",
            given()
        ));
    }
    Ok(p.to_owned())
}

fn resolve_output(
    sp: Spelling,
    flag: Option<&Path>,
    env: &HostEnv,
) -> Result<PathBuf, ConfigError> {
    match flag.filter(|p| !p.as_os_str().is_empty()) {
        Some(p) if p.file_name().is_none() || p.as_os_str().to_string_lossy().ends_with('/') => {
            err(format!(
                "{}: name a file (e.g. {}/token.json), not a directory",
                sp.quoted("output", p.display()),
                p.display()
            ))
        }
        Some(p) => Ok(p.to_owned()),
        None => match env.default_output(None) {
            Some(p) => Ok(p),
            None => err(
                "--output is not set and XDG_RUNTIME_DIR is unset: pass --output PATH \
                 (or GITHUB_TOKEN_FILE)",
            ),
        },
    }
}

/// Base URL of the REST API. `http://` only to a loopback address.
pub fn parse_api_url(sp: Spelling, s: &str) -> Result<String, ConfigError> {
    let key = sp.of("api_url");
    let bad = |why: &str| {
        err(format!(
            "{}: {why} (GitHub.com is {DEFAULT_API_URL}; GitHub Enterprise Server is \
             https://HOST/api/v3)",
            sp.quoted("api_url", without_userinfo(s).escape_debug())
        ))
    };
    let Ok(url) = reqwest::Url::parse(s) else {
        return bad("not a URL");
    };
    if !url.username().is_empty() || url.password().is_some() {
        // never echo it: the part before '@' may be a password
        return err(format!(
            "{key}: must not carry a user name or password (user:password@); the App \
             authenticates with its key, and a credential in the URL would reach logs and \
             proxies"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return bad("must not carry a query or fragment");
    }
    match url.scheme() {
        "https" => {}
        "http" if crate::github::is_loopback(&url) => {}
        "http" => return bad("plain http:// is only allowed to a loopback address; use https://"),
        _ => return bad("expected an https:// URL"),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return bad("has no host");
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// `s` with anything between `://` and the last `@` hidden: a URL that fails to parse may
/// still carry a password, and an error must not echo it.
fn without_userinfo(s: &str) -> String {
    let start = s.find("://").map_or(0, |i| i + 3);
    match s.rfind('@') {
        Some(at) if at >= start => format!("{}***@{}", &s[..start], &s[at + 1..]),
        _ => s.to_owned(),
    }
}

pub fn parse_policy(
    sp: Spelling,
    interval: Option<&str>,
    jitter: Option<&str>,
    min_remaining: Option<&str>,
) -> Result<Policy, ConfigError> {
    let (int_key, jit_key, min_key) = (
        sp.of("refresh_interval"),
        sp.of("jitter"),
        sp.of("min_remaining"),
    );
    let interval = parse_duration_of(
        sp,
        "refresh_interval",
        interval.unwrap_or(DEFAULT_REFRESH_INTERVAL),
    )?;
    let jitter = parse_duration_of(sp, "jitter", jitter.unwrap_or(DEFAULT_JITTER))?;
    let min_remaining = parse_duration_of(
        sp,
        "min_remaining",
        min_remaining.unwrap_or(DEFAULT_MIN_REMAINING),
    )?;
    if interval < Duration::from_secs(1) {
        return err(format!("{int_key} must be at least 1s"));
    }
    if interval > Duration::from_secs(55 * 60) {
        return err(format!(
            "{int_key} {}: installation tokens live one hour; choose at most 55m \
             (the default is {DEFAULT_REFRESH_INTERVAL})",
            format_duration(interval)
        ));
    }
    if jitter >= interval {
        return err(format!(
            "{jit_key} {} must be shorter than {int_key} {}",
            format_duration(jitter),
            format_duration(interval)
        ));
    }
    if min_remaining >= Duration::from_secs(3600) {
        return err(format!(
            "{min_key} must be less than 1h (tokens live one hour)"
        ));
    }
    Ok(Policy {
        interval,
        jitter,
        min_remaining,
    })
}

/// `true`/`false` as flags and environment variables spell them.
fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Setting `name`'s duration, or an error naming it as `sp` says.
pub fn parse_duration_of(sp: Spelling, name: &str, s: &str) -> Result<Duration, ConfigError> {
    parse_duration(s)
        .map_err(|why| ConfigError(format!("{}: {why}", sp.quoted(name, s.escape_debug()))))
}

#[cfg(test)]
mod tests {
    #[test]
    fn userinfo_in_the_api_url_is_refused_and_not_echoed() {
        for url in [
            "https://u:hunter2@api.github.com",
            "https://:hunter2@api.github.com",
            "https://u@api.github.com",
            "https://x:hunter2@exa mple.com",
        ] {
            let e = parse_api_url(Spelling::FLAGS, url).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
        }
        assert!(crate::github::is_loopback_url("http://127.0.0.1:8080"));
        assert!(crate::github::is_loopback_url("http://[::1]:1"));
        assert!(crate::github::is_loopback_url("http://localhost"));
        assert!(!crate::github::is_loopback_url("https://api.github.com"));
    }

    use super::*;

    use super::test_env as env;

    fn raw() -> RawConfig {
        RawConfig {
            app_id: Some("1234".into()),
            private_key_file: Some("/k.pem".into()),
            installation_id: Some("100".into()),
            ..Default::default()
        }
    }

    fn error_of(r: RawConfig) -> String {
        r.into_config(&env()).unwrap_err().0
    }

    #[test]
    fn defaults() {
        let c = raw().into_config(&env()).unwrap();
        let t = &c.targets[0];
        assert_eq!(
            t.output,
            PathBuf::from("/run/user/1000/github-token-refresher/token.json")
        );
        assert_eq!(t.api_url, "https://api.github.com");
        assert_eq!(t.policy.interval, Duration::from_secs(45 * 60));
        assert_eq!(t.policy.jitter, Duration::from_secs(120));
        assert_eq!(t.policy.min_remaining, Duration::from_secs(600));
        assert_eq!(t.installation, InstallationRef::Id(100));
        assert_eq!(c.http_timeout, Duration::from_secs(30));
    }

    #[test]
    fn app_id_and_client_id() {
        assert_eq!(parse_app_id(Spelling::FLAGS, "123456").unwrap(), "123456");
        assert_eq!(
            parse_app_id(Spelling::FLAGS, "Iv23liABCdef0123").unwrap(),
            "Iv23liABCdef0123"
        );
        assert_eq!(
            parse_app_id(Spelling::FLAGS, "Iv1.0123456789abcdef").unwrap(),
            "Iv1.0123456789abcdef"
        );
        let e = parse_app_id(Spelling::FLAGS, "12a4").unwrap_err().0;
        assert!(e.starts_with("--app-id '12a4'"), "{e}");
    }

    #[test]
    fn installation_choices() {
        assert_eq!(
            parse_installation(Spelling::FLAGS, None, None, Some("acme/widgets")).unwrap(),
            InstallationRef::Repo {
                owner: "acme".into(),
                name: "widgets".into()
            }
        );
        assert_eq!(
            parse_installation(Spelling::FLAGS, None, Some("octocat"), None).unwrap(),
            InstallationRef::Owner("octocat".into())
        );
        assert!(
            parse_installation(Spelling::FLAGS, None, Some("a"), Some("a/b"))
                .unwrap_err()
                .0
                .contains("only one")
        );
        assert!(
            parse_installation(Spelling::FLAGS, None, None, None)
                .unwrap_err()
                .0
                .contains("--installation-id N")
        );
        assert!(
            parse_installation(Spelling::FLAGS, Some("x1"), None, None)
                .unwrap_err()
                .0
                .starts_with("--installation-id")
        );
        assert!(
            parse_installation(Spelling::FLAGS, None, None, Some("acme"))
                .unwrap_err()
                .0
                .contains("OWNER/NAME")
        );
    }

    #[test]
    fn scoping() {
        assert_eq!(
            permission_pairs(Spelling::FLAGS, "contents=read, pull_requests=write")
                .and_then(|p| parse_permissions(Spelling::FLAGS, p))
                .unwrap(),
            BTreeMap::from([
                ("contents".to_string(), "read".to_string()),
                ("pull_requests".to_string(), "write".to_string())
            ])
        );
        assert!(
            permission_pairs(Spelling::FLAGS, "contents")
                .and_then(|p| parse_permissions(Spelling::FLAGS, p))
                .unwrap_err()
                .0
                .contains("NAME=LEVEL")
        );
        assert!(
            permission_pairs(Spelling::FLAGS, "contents=rw")
                .and_then(|p| parse_permissions(Spelling::FLAGS, p))
                .unwrap_err()
                .0
                .contains("read, write or admin")
        );
        assert!(
            permission_pairs(Spelling::FLAGS, "Contents=read")
                .and_then(|p| parse_permissions(Spelling::FLAGS, p))
                .is_err()
        );
        assert_eq!(
            parse_repositories(Spelling::FLAGS, "a, b,a,".split(','), None).unwrap(),
            vec!["a", "b"]
        );
        assert_eq!(
            parse_repositories(Spelling::FLAGS, "acme/a".split(','), Some("acme")).unwrap(),
            vec!["a"]
        );
        assert!(parse_repositories(Spelling::FLAGS, "other/a".split(','), Some("acme")).is_err());
        assert!(parse_repositories(Spelling::FLAGS, "a b".split(','), None).is_err());
    }

    #[test]
    fn api_url_rules() {
        assert_eq!(
            parse_api_url(Spelling::FLAGS, "https://ghe.example.com/api/v3/").unwrap(),
            "https://ghe.example.com/api/v3"
        );
        assert_eq!(
            parse_api_url(Spelling::FLAGS, "http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(parse_api_url(Spelling::FLAGS, "http://[::1]:80").is_ok());
        assert!(parse_api_url(Spelling::FLAGS, "http://localhost:1").is_ok());
        let e = parse_api_url(Spelling::FLAGS, "http://ghe.example.com")
            .unwrap_err()
            .0;
        assert!(e.contains("only allowed to a loopback"), "{e}");
        assert!(parse_api_url(Spelling::FLAGS, "ftp://x").is_err());
        assert!(parse_api_url(Spelling::FLAGS, "api.github.com").is_err());
    }

    #[test]
    fn output_and_key_resolution() {
        let mut r = raw();
        r.output = Some("/tmp/dir/".into());
        assert!(error_of(r).contains("not a directory"));
        let no_xdg = HostEnv::default();
        assert!(
            raw()
                .into_config(&no_xdg)
                .unwrap_err()
                .0
                .contains("XDG_RUNTIME_DIR")
        );
        let mut r = raw();
        r.private_key_file = None;
        assert!(error_of(r).starts_with("--private-key-file is missing"));
        let creds = HostEnv {
            credential_key: Some("/run/credentials/x/github-app.pem".into()),
            ..env()
        };
        let mut r = raw();
        r.private_key_file = Some("".into());
        assert_eq!(
            r.into_config(&creds).unwrap().targets[0].app.key_file,
            Path::new("/run/credentials/x/github-app.pem")
        );
    }

    #[test]
    fn every_problem_in_one_error() {
        let r = RawConfig {
            app_id: Some("12a".into()),
            permissions: Some("contents=rw".into()),
            jitter: Some("soon".into()),
            http_timeout: Some("0s".into()),
            ..Default::default()
        };
        let e = r.into_config(&HostEnv::default()).unwrap_err();
        assert_problems_start_with(
            &e,
            &[
                "--app-id '12a'",
                "--private-key-file is missing",
                "no installation given",
                "--permissions: level 'rw'",
                "--output is not set",
                "--jitter 'soon'",
                "--http-timeout must be at least 1s",
            ],
        );
    }

    /// `e` holds one problem per entry of `starts`, each beginning with its entry.
    fn assert_problems_start_with(e: &ConfigError, starts: &[&str]) {
        let lines: Vec<&str> = e.problems().collect();
        assert_eq!(lines.len(), starts.len(), "{lines:#?}");
        for start in starts {
            assert!(
                lines.iter().any(|l| l.starts_with(start)),
                "{start}: {lines:#?}"
            );
        }
    }

    /// A setting given by its variable is named by it (`VAR='value'`, as an environment
    /// file spells it), one given by flag (or not at all) by the flag.
    #[test]
    fn a_setting_is_named_as_it_was_given() {
        for s in settings::SETTINGS.iter().filter(|s| s.env.is_some()) {
            let by_env = Spelling::Flag(Origins::COMMAND_LINE.with_env(s.name));
            assert_eq!(by_env.of(s.name), s.env.unwrap());
            assert_eq!(Spelling::FLAGS.of(s.name), s.long().unwrap());
            assert_eq!(
                by_env.quoted(s.name, "v"),
                format!("{}='v'", s.env.unwrap())
            );
            assert_eq!(
                Spelling::FLAGS.quoted(s.name, "v"),
                format!("--{} 'v'", s.flag.unwrap())
            );
            assert_eq!(Spelling::Key.quoted(s.name, "v"), format!("{} 'v'", s.name));
        }
        let r = RawConfig {
            app_id: Some("abc".into()),
            installation_id: Some("x1".into()),
            jitter: Some("50m".into()),
            http_timeout: Some("soon".into()),
            origins: Origins::COMMAND_LINE
                .with_env("app_id")
                .with_env("jitter")
                .with_env("http_timeout"),
            ..raw()
        };
        let e = r.into_config(&env()).unwrap_err();
        assert_problems_start_with(
            &e,
            &[
                "GITHUB_APP_ID='abc': expected the App ID",
                "--installation-id 'x1': expected a number",
                "GITHUB_TOKEN_REFRESH_JITTER 50m must be shorter than --refresh-interval 45m",
                "GITHUB_HTTP_TIMEOUT='soon': ",
            ],
        );
    }

    #[test]
    fn schedule_limits() {
        let mut r = raw();
        r.jitter = Some("50m".into());
        assert!(error_of(r).contains("shorter than --refresh-interval"));
        let mut r = raw();
        r.refresh_interval = Some("2h".into());
        assert!(error_of(r).contains("at most 55m"));
        let mut r = raw();
        r.min_remaining = Some("soon".into());
        assert!(error_of(r).starts_with("--min-remaining 'soon'"));
        let mut r = raw();
        r.app_id = Some("  ".into());
        assert!(error_of(r).starts_with("--app-id is missing"));
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC*") {
            let _ = parse_duration(&s);
            let _ = permission_pairs(Spelling::FLAGS, &s).and_then(|p| parse_permissions(Spelling::FLAGS, p));
            let _ = parse_repositories(Spelling::FLAGS, s.split(','), Some("acme"));
            let _ = parse_api_url(Spelling::FLAGS, &s);
            let _ = parse_app_id(Spelling::FLAGS, &s);
            let _ = parse_installation(Spelling::FLAGS, None, None, Some(&s));
        }

    }
}
