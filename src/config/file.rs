//! The multi-target configuration file (`--config FILE`, TOML): shared defaults and any
//! number of `[[target]]` tables. Parsing is pure; every error names the file and line.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::config::{
    AppRef, Config, ConfigError, DEFAULT_API_URL, Delivery, HostEnv, InstallationRef, Schedule,
    Scope, Source as ConfigSource, Spelling, Target, keep, parse_api_url, parse_app_id,
    parse_installation, parse_permissions, parse_policy, parse_repositories,
};
use crate::durations::{DEFAULT_HTTP_TIMEOUT, parse_duration};
use crate::token_file::FileOptions;

/// Shared defaults: every key a target may also set for itself. (Spelled out in both
/// structs: `#[serde(flatten)]` would lose the spans that name the line of a mistake.)
struct Defaults<'a> {
    app_id: &'a Option<Spanned<IdValue>>,
    private_key_file: &'a Option<PathBuf>,
    api_url: &'a Option<Spanned<String>>,
    refresh_interval: &'a Option<Spanned<String>>,
    jitter: &'a Option<Spanned<String>>,
    min_remaining: &'a Option<Spanned<String>>,
    mode: &'a Option<Spanned<ModeValue>>,
    group: &'a Option<Spanned<IdValue>>,
    revoke_on_stop: &'a Option<bool>,
    revoke_superseded_after: &'a Option<Spanned<String>>,
}

macro_rules! defaults_of {
    ($raw:expr) => {
        Defaults {
            app_id: &$raw.app_id,
            private_key_file: &$raw.private_key_file,
            api_url: &$raw.api_url,
            refresh_interval: &$raw.refresh_interval,
            jitter: &$raw.jitter,
            min_remaining: &$raw.min_remaining,
            mode: &$raw.mode,
            group: &$raw.group,
            revoke_on_stop: &$raw.revoke_on_stop,
            revoke_superseded_after: &$raw.revoke_superseded_after,
        }
    };
}

/// A TOML table that takes the per-target settings: the file's top level (their defaults)
/// and each `[[target]]` (its own). One list for both, so the two cannot drift apart.
macro_rules! table_with_target_settings {
    ($(#[$meta:meta])* struct $name:ident { $($own:tt)* }) => {
        $(#[$meta])*
        struct $name {
            app_id: Option<Spanned<IdValue>>,
            private_key_file: Option<PathBuf>,
            api_url: Option<Spanned<String>>,
            refresh_interval: Option<Spanned<String>>,
            jitter: Option<Spanned<String>>,
            min_remaining: Option<Spanned<String>>,
            mode: Option<Spanned<ModeValue>>,
            group: Option<Spanned<IdValue>>,
            revoke_on_stop: Option<bool>,
            revoke_superseded_after: Option<Spanned<String>>,
            $($own)*
        }
    };
}

table_with_target_settings! {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawFile {
        http_timeout: Option<Spanned<String>>,
        /// On reload, delete the token files of targets removed from the file.
        #[serde(default)]
        delete_removed_outputs: bool,
        metrics_file: Option<Spanned<PathBuf>>,
        #[serde(default)]
        target: Vec<Spanned<RawTarget>>,
    }
}

table_with_target_settings! {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawTarget {
        name: Spanned<String>,
        installation_id: Option<Spanned<IdValue>>,
        owner: Option<Spanned<String>>,
        repo: Option<Spanned<String>>,
        #[serde(default)]
        repositories: Option<Spanned<Vec<String>>>,
        #[serde(default)]
        permissions: Option<Spanned<BTreeMap<String, String>>>,
        output: Option<Spanned<PathBuf>>,
        socket: Option<Spanned<PathBuf>>,
    }
}

/// A number or a string (`app_id = 123` and `app_id = "Iv23…"` both work).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum IdValue {
    Number(u64),
    Text(String),
}

impl IdValue {
    fn text(&self) -> String {
        match self {
            IdValue::Number(n) => n.to_string(),
            IdValue::Text(s) => s.clone(),
        }
    }
}

/// `mode = 0o640` or `mode = "0640"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum ModeValue {
    Number(u32),
    Text(String),
}

struct Source<'a> {
    path: &'a Path,
    text: &'a str,
    /// `status` reads only the token files: a target may then name no key at all.
    key_optional: bool,
}

impl Source<'_> {
    fn line_of(&self, span: Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text[..end].bytes().filter(|b| *b == b'\n').count() + 1
    }

    fn err<T>(&self, span: Range<usize>, msg: impl std::fmt::Display) -> Result<T, ConfigError> {
        Err(ConfigError(format!(
            "{}:{}: {msg}",
            self.path.display(),
            self.line_of(span)
        )))
    }

    /// `r`'s error at the line of `span`. The parsers name each setting the way the file
    /// spells it (`Spelling::Key`), so the message is used as it is.
    fn at<T>(&self, span: Range<usize>, r: Result<T, ConfigError>) -> Result<T, ConfigError> {
        r.or_else(|e| self.err(span, e.0))
    }
}

/// Read and parse the file at `path`.
pub fn load(path: &Path, env: &HostEnv) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "cannot read configuration file '{}': {e}",
            path.display()
        ))
    })?;
    parse(&text, path, env)
}

/// Read the file for `status`, which needs the targets' outputs but never a key: a file
/// that relies on systemd's credential (`$CREDENTIALS_DIRECTORY`) works from a shell too.
pub fn load_for_status(path: &Path, env: &HostEnv) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "cannot read configuration file '{}': {e}",
            path.display()
        ))
    })?;
    parse_with(&text, path, env, true)
}

/// Parse and validate the text of a configuration file.
pub fn parse(text: &str, path: &Path, env: &HostEnv) -> Result<Config, ConfigError> {
    parse_with(text, path, env, false)
}

fn parse_with(
    text: &str,
    path: &Path,
    env: &HostEnv,
    key_optional: bool,
) -> Result<Config, ConfigError> {
    let src = Source {
        path,
        text,
        key_optional,
    };
    let raw: RawFile = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let msg = e.message().replace('\n', " ");
            return src.err(span, msg.trim_end_matches('.').trim());
        }
    };
    if raw.target.is_empty() {
        return Err(ConfigError(format!(
            "{}: no [[target]] table: add one per token file (name, installation, output)",
            path.display()
        )));
    }
    let mut problems = Vec::new();
    let http_timeout = match &raw.http_timeout {
        Some(s) => src.at(
            s.span(),
            parse_duration(s.get_ref()).map_err(|w| ConfigError(format!("http_timeout: {w}"))),
        ),
        None => Ok(parse_duration(DEFAULT_HTTP_TIMEOUT).unwrap_or_default()),
    };
    let http_timeout = keep(&mut problems, http_timeout);
    let metrics_file = match &raw.metrics_file {
        Some(p) if !p.get_ref().is_absolute() => {
            src.err(p.span(), "metrics_file must be an absolute path")
        }
        Some(p) => Ok(Some(p.get_ref().clone())),
        None => Ok(None),
    };
    let metrics_file = keep(&mut problems, metrics_file);
    let targets = targets_of(&src, &raw, env, &mut problems);
    match (http_timeout, metrics_file) {
        (Some(http_timeout), Some(metrics_file)) if problems.is_empty() => Ok(Config {
            targets,
            http_timeout,
            source: ConfigSource::File(path.to_owned()),
            delete_removed_outputs: raw.delete_removed_outputs,
            metrics_file,
        }),
        _ => Err(ConfigError(problems.join("\n"))),
    }
}

/// Every `[[target]]`, each mistake (of a target, or two targets sharing a name, an output
/// or a socket) added to `problems` so that one run reports them all.
fn targets_of(
    src: &Source,
    raw: &RawFile,
    env: &HostEnv,
    problems: &mut Vec<String>,
) -> Vec<Target> {
    let mut targets = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut outputs: HashMap<PathBuf, (String, usize)> = HashMap::new();
    let mut sockets: HashMap<PathBuf, (String, usize)> = HashMap::new();
    for t in &raw.target {
        let span = t.span();
        let line = src.line_of(span.clone());
        if let Some(first) = names.insert(t.get_ref().name.get_ref().trim().to_owned(), line) {
            problems.extend(src.err::<()>(
                t.get_ref().name.span(),
                format!(
                    "target name '{}' is used twice (first at line {first}); names must be unique",
                    t.get_ref().name.get_ref().trim()
                ),
            ).err().map(|e| e.0));
            continue;
        }
        let Some(target) = keep(
            problems,
            build_target(src, t.get_ref(), span, &defaults_of!(raw), env),
        ) else {
            continue;
        };
        if let Some(sock) = &target.socket
            && let Some((other, first)) = sockets.insert(sock.clone(), (target.name.clone(), line))
        {
            problems.extend(src.err::<()>(
                t.get_ref().socket.as_ref().map_or(t.span(), |o| o.span()),
                format!(
                    "targets '{other}' (line {first}) and '{}' both listen on '{}'; give each its own socket",
                    target.name,
                    sock.display()
                ),
            ).err().map(|e| e.0));
            continue;
        }
        if target.writes_file
            && let Some((other, first)) =
                outputs.insert(same_file_key(&target.output), (target.name.clone(), line))
        {
            problems.extend(src.err::<()>(
                t.get_ref().output.as_ref().map_or(t.span(), |o| o.span()),
                format!(
                    "targets '{other}' (line {first}) and '{}' both write '{}'; give each its own output",
                    target.name,
                    target.output.display()
                ),
            ).err().map(|e| e.0));
            continue;
        }
        targets.push(target);
    }
    targets
}

/// A target name: it becomes a directory name under `XDG_RUNTIME_DIR`, a log field and
/// part of STATUS, so a plain identifier — never `.`, `..`, a `/` or a control character.
pub fn is_plain_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `path` with `.` dropped and `..` resolved lexically (`/a/b/../c` → `/a/c`).
pub fn lexical(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// What decides whether two outputs are one file: the deepest existing directory on the
/// way canonicalised (symbolic links resolved), the rest resolved lexically.
pub fn same_file_key(path: &Path) -> PathBuf {
    let mut existing = path.parent();
    while let Some(dir) = existing {
        if let Ok(real) = std::fs::canonicalize(dir) {
            let rest = path.strip_prefix(dir).unwrap_or(path);
            return lexical(&real.join(rest));
        }
        existing = dir.parent();
    }
    lexical(path)
}

fn pick<'a, T>(own: &'a Option<T>, shared: &'a Option<T>) -> Option<&'a T> {
    own.as_ref().or(shared.as_ref())
}

/// What every part of a target reads: the file, the target's own keys, the shared ones.
struct Part<'a> {
    src: &'a Source<'a>,
    t: &'a RawTarget,
    own: Defaults<'a>,
    shared: &'a Defaults<'a>,
    /// The whole `[[target]]` table, for a missing key.
    span: Range<usize>,
    name: &'a str,
}

impl Part<'_> {
    fn ctx(&self, what: &str) -> String {
        format!("target '{}': {what}", self.name)
    }

    fn missing<T>(&self, key: &str) -> Result<T, ConfigError> {
        self.src.err(
            self.span.clone(),
            self.ctx(&format!(
                "no {key} (set it at the top of the file or in the target)"
            )),
        )
    }
}

/// One `[[target]]` table → a [`Target`]. Each part is checked even when another failed,
/// so the error holds one line per mistake of the target.
fn build_target(
    src: &Source,
    t: &RawTarget,
    span: Range<usize>,
    shared: &Defaults,
    env: &HostEnv,
) -> Result<Target, ConfigError> {
    let name = t.name.get_ref().trim().to_owned();
    if !is_plain_name(&name) {
        return src.err(
            t.name.span(),
            format!(
                "target name '{}': start with a letter or digit, then use letters, digits, \
                 '-', '_' or '.' (at most 64; it names a directory, so no '/', '.' or '..')",
                crate::sanitize::clean(&name).escape_debug()
            ),
        );
    }
    let p = Part {
        src,
        t,
        own: defaults_of!(t),
        shared,
        span,
        name: &name,
    };
    let mut problems = Vec::new();
    let app = keep(&mut problems, app_of(&p, env));
    let scope = keep(&mut problems, scope_of(&p));
    let delivery = keep(&mut problems, delivery_of(&p, env));
    let schedule = keep(&mut problems, schedule_of(&p));
    let file = keep(&mut problems, file_options_of(&p, env));
    let revoke = keep(&mut problems, revocation_of(&p));
    let (Some(app), Some(scope), Some(delivery), Some(schedule), Some(file), Some(revoke)) =
        (app, scope, delivery, schedule, file, revoke)
    else {
        return Err(ConfigError(problems.join("\n")));
    };
    Ok(Target::from_parts(
        name,
        app,
        (scope, delivery, schedule, file, revoke),
    ))
}

fn app_of(p: &Part, env: &HostEnv) -> Result<AppRef, ConfigError> {
    let app_id = match pick(p.own.app_id, p.shared.app_id) {
        Some(v) => p
            .src
            .at(v.span(), parse_app_id(Spelling::Key, &v.get_ref().text()))?,
        None => return p.missing("app_id"),
    };
    let key_file = match pick(p.own.private_key_file, p.shared.private_key_file) {
        Some(k) => k.clone(),
        None => match &env.credential_key {
            Some(key) => key.clone(),
            _ if p.src.key_optional => PathBuf::new(),
            _ => return p.missing("private_key_file"),
        },
    };
    Ok(AppRef { app_id, key_file })
}

fn scope_of(p: &Part) -> Result<Scope, ConfigError> {
    let t = p.t;
    let text = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.get_ref().trim().to_owned());
    let id = t.installation_id.as_ref().map(|v| v.get_ref().text());
    let installation = p.src.at(
        p.span.clone(),
        parse_installation(
            Spelling::Key,
            id.as_deref(),
            text(&t.owner).as_deref(),
            text(&t.repo).as_deref(),
        )
        .map_err(|e| ConfigError(p.ctx(&e.0))),
    )?;
    let owner_hint = match &installation {
        InstallationRef::Owner(o) | InstallationRef::Repo { owner: o, .. } => Some(o.as_str()),
        InstallationRef::Id(_) => None,
    };
    let repositories = match &t.repositories {
        Some(r) => p.src.at(
            r.span(),
            parse_repositories(
                Spelling::Key,
                r.get_ref().iter().map(String::as_str),
                owner_hint,
            ),
        )?,
        None => Vec::new(),
    };
    let permissions = match &t.permissions {
        Some(m) => p.src.at(
            m.span(),
            parse_permissions(
                Spelling::Key,
                m.get_ref().iter().map(|(k, v)| (k.as_str(), v.as_str())),
            ),
        )?,
        None => BTreeMap::new(),
    };
    Ok(Scope {
        installation,
        repositories,
        permissions,
    })
}

/// The socket, whether the daemon writes a file, and the file.
fn delivery_of(p: &Part, env: &HostEnv) -> Result<Delivery, ConfigError> {
    let (src, t) = (p.src, p.t);
    let socket = match &t.socket {
        Some(s) if !s.get_ref().is_absolute() => {
            return src.err(s.span(), p.ctx("socket must be an absolute path"));
        }
        Some(s) => Some(
            src.at(
                s.span(),
                crate::config::check_socket_path(Spelling::Key, s.get_ref())
                    .map_err(|e| ConfigError(p.ctx(&e.0))),
            )?,
        ),
        None => None,
    };
    // a socket alone serves on demand; with an output the file is kept fresh too
    let writes_file = socket.is_none() || t.output.is_some();
    let output = match &t.output {
        _ if !writes_file => PathBuf::new(),
        Some(o) if o.get_ref().is_absolute() => lexical(o.get_ref()),
        Some(o) => return src.err(o.span(), p.ctx("output must be an absolute path")),
        None => match env.default_output(Some(p.name)) {
            Some(o) => o,
            None => {
                return src.err(
                    p.span.clone(),
                    p.ctx("no output and XDG_RUNTIME_DIR is unset"),
                );
            }
        },
    };
    Ok(Delivery {
        socket,
        writes_file,
        output,
    })
}

fn schedule_of(p: &Part) -> Result<Schedule, ConfigError> {
    let (own, shared) = (&p.own, p.shared);
    let api_url = match pick(own.api_url, shared.api_url) {
        Some(u) => p
            .src
            .at(u.span(), parse_api_url(Spelling::Key, u.get_ref()))?,
        None => DEFAULT_API_URL.to_owned(),
    };
    let interval = pick(own.refresh_interval, shared.refresh_interval);
    let jitter = pick(own.jitter, shared.jitter);
    let min_rem = pick(own.min_remaining, shared.min_remaining);
    let policy_span = [interval, jitter, min_rem]
        .iter()
        .find_map(|v| v.map(Spanned::span))
        .unwrap_or(p.span.clone());
    fn text(v: Option<&Spanned<String>>) -> Option<&str> {
        v.map(|s| s.get_ref().as_str())
    }
    let policy = p.src.at(
        policy_span,
        parse_policy(Spelling::Key, text(interval), text(jitter), text(min_rem)),
    )?;
    Ok(Schedule { api_url, policy })
}

fn file_options_of(p: &Part, env: &HostEnv) -> Result<FileOptions, ConfigError> {
    let mode = pick(p.own.mode, p.shared.mode);
    let mut file = FileOptions::default();
    if let Some(m) = mode {
        file.mode = p.src.at(m.span(), parse_mode(m.get_ref()))?;
    }
    if let Some(g) = pick(p.own.group, p.shared.group) {
        file.gid = Some(
            p.src
                .at(g.span(), resolve_group(g.get_ref(), env.lookup_group))?,
        );
    }
    if file.mode & 0o070 != 0 && file.gid.is_none() {
        return p.src.err(
            mode.map_or(p.span.clone(), Spanned::span),
            p.ctx(&format!(
                "mode {:04o} lets the file's group read the token, but no group is set: add \
                 group = \"NAME\" (the group the readers share), or use mode \"0600\"",
                file.mode
            )),
        );
    }
    Ok(file)
}

fn revocation_of(p: &Part) -> Result<crate::revoke::Revocation, ConfigError> {
    let after = pick(
        p.own.revoke_superseded_after,
        p.shared.revoke_superseded_after,
    );
    let superseded_after = match after {
        Some(s) => Some(p.src.at(
            s.span(),
            crate::revoke::parse_superseded_after(Spelling::Key, s.get_ref()),
        )?),
        None => None,
    };
    Ok(crate::revoke::Revocation {
        on_stop: pick(p.own.revoke_on_stop, p.shared.revoke_on_stop)
            .copied()
            .unwrap_or(false),
        superseded_after,
    })
}

fn parse_mode(v: &ModeValue) -> Result<u32, ConfigError> {
    let mode = match v {
        ModeValue::Number(n) => Some(*n),
        ModeValue::Text(s) => u32::from_str_radix(s.trim().trim_start_matches("0o"), 8).ok(),
    };
    match mode {
        Some(m) if m & !0o777 == 0 && m & 0o600 == 0o600 && m & 0o027 == 0 => Ok(m),
        _ => Err(ConfigError(
            "mode: expected an octal mode the owner can read and write, the group can at \
             most read and others cannot touch, e.g. \"0600\" or \"0640\""
                .into(),
        )),
    }
}

/// A group name (looked up with `lookup`, /etc/group in the process) or a numeric gid.
fn resolve_group(v: &IdValue, lookup: fn(&str) -> Option<u32>) -> Result<u32, ConfigError> {
    match v {
        IdValue::Number(n) => {
            u32::try_from(*n).map_err(|_| ConfigError("group: gid out of range".into()))
        }
        IdValue::Text(name) => name
            .parse::<u32>()
            .ok()
            .or_else(|| lookup(name))
            .ok_or_else(|| {
                ConfigError(format!(
                    "group '{name}' not found in /etc/group; give a gid instead"
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::config::settings;

    use crate::config::test_env as env;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("/etc/gtr.toml"), &env())
    }

    const GOOD: &str = r#"
app_id = 1234
private_key_file = "/keys/app.pem"
refresh_interval = "30m"

[[target]]
name = "agent-1"
installation_id = 100
repositories = ["widgets"]
permissions = { contents = "read", pull_requests = "write" }
output = "/run/user/1000/gtr/agent-1/token.json"
mode = "0640"
group = 0

[[target]]
name = "agent-2"
owner = "octocat"
app_id = "Iv23liOTHER"
private_key_file = "/keys/other.pem"
jitter = "1m"
"#;

    #[test]
    fn sockets() {
        let base = "app_id = 1\nprivate_key_file = \"/k.pem\"\n";
        let t = |name: &str, rest: &str| {
            format!("[[target]]\nname = \"{name}\"\ninstallation_id = 1\n{rest}\n")
        };
        let f = parse_str(&format!(
            "{base}{}{}",
            t("lazy", "socket = \"/run/s/lazy.sock\""),
            t(
                "both",
                "socket = \"/run/s/both.sock\"\noutput = \"/run/o/both.json\""
            )
        ))
        .unwrap();
        let [lazy, both] = f.targets.as_slice() else {
            panic!()
        };
        assert!(
            !lazy.writes_file,
            "a socket alone: minted on demand, no file"
        );
        assert_eq!(lazy.socket.as_deref(), Some(Path::new("/run/s/lazy.sock")));
        assert!(both.writes_file);
        assert_eq!(both.output, Path::new("/run/o/both.json"));
        let error = |text: String| parse_str(&text).unwrap_err().0;
        let e = error(format!("{base}{}", t("a", "socket = \"rel.sock\"")));
        assert!(e.contains("gtr.toml:6:") && e.contains("absolute"), "{e}");
        let e = error(format!(
            "{base}{}{}",
            t("a", "socket = \"/s/x.sock\""),
            t("b", "socket = \"/s/x.sock\"")
        ));
        assert!(e.contains("both listen on '/s/x.sock'"), "{e}");
        let long = format!("/{}.sock", "a".repeat(120));
        let e = error(format!("{base}{}", t("a", &format!("socket = \"{long}\""))));
        assert!(e.contains("107 bytes"), "{e}");
    }

    #[test]
    fn a_good_file() {
        let f = parse_str(GOOD).unwrap();
        let [a, b] = f.targets.as_slice() else {
            panic!()
        };
        assert_eq!(a.name, "agent-1");
        assert_eq!(a.app.app_id, "1234");
        assert_eq!(a.installation, InstallationRef::Id(100));
        assert_eq!(a.repositories, vec!["widgets"]);
        assert_eq!(a.permissions.len(), 2);
        assert_eq!(
            a.file,
            FileOptions {
                mode: 0o640,
                gid: Some(0)
            }
        );
        assert_eq!(a.policy.interval.as_secs(), 1800);
        assert_eq!(b.app.app_id, "Iv23liOTHER");
        assert_eq!(b.app.key_file, PathBuf::from("/keys/other.pem"));
        assert_eq!(b.installation, InstallationRef::Owner("octocat".into()));
        assert_eq!(
            b.output,
            PathBuf::from("/run/user/1000/github-token-refresher/agent-2/token.json")
        );
        assert_eq!(b.policy.jitter.as_secs(), 60);
        assert_eq!(b.api_url, DEFAULT_API_URL);
        assert!(!f.delete_removed_outputs);
    }

    #[test]
    fn names_are_plain_and_outputs_normalised() {
        for ok in ["a", "agent-1", "A_b.c", "9"] {
            assert!(is_plain_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "-x",
            "a/b",
            "a\nb",
            "é",
            &"a".repeat(65),
        ] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
        assert_eq!(
            lexical(Path::new("/x/b/../a/./token.json")),
            Path::new("/x/a/token.json")
        );
        assert_eq!(lexical(Path::new("/../a")), Path::new("/a"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
        assert_eq!(
            same_file_key(&dir.path().join("link/new/token.json")),
            same_file_key(&dir.path().join("real/x/../new/token.json"))
        );
    }

    #[test]
    fn modes_never_let_the_group_write_and_need_a_group_to_read() {
        assert!(parse_mode(&ModeValue::Text("0600".into())).is_ok());
        assert!(parse_mode(&ModeValue::Text("0640".into())).is_ok());
        for bad in ["0660", "0620", "0644", "0400", "0604"] {
            assert!(parse_mode(&ModeValue::Text(bad.into())).is_err(), "{bad}");
        }
        let e = error_of(
            "app_id = 1\nprivate_key_file = \"/k\"\n[[target]]\nname = \"a\"\ninstallation_id = 1\noutput = \"/t/token.json\"\nmode = \"0640\"\n",
        );
        assert!(e.contains("no group is set"), "{e}");
    }

    fn error_of(text: &str) -> String {
        parse_str(text).unwrap_err().0
    }

    /// The keys serde accepts at `where_`, read from its "unknown field" error, which lists
    /// every field of the struct (deny_unknown_fields).
    fn accepted_keys(text: &str) -> BTreeSet<String> {
        let e = error_of(text);
        let list = e
            .split("expected one of")
            .nth(1)
            .unwrap_or_else(|| panic!("{e}"));
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_toml_keys_are_the_tables() {
        use crate::config::settings::{SETTINGS, TARGET_TABLE};
        let want = |pick: fn(&settings::Setting) -> bool| -> BTreeSet<String> {
            SETTINGS
                .iter()
                .filter(|s| pick(s))
                .map(|s| s.name.to_owned())
                .collect()
        };
        let mut top = want(|s| s.in_file.top());
        top.insert(TARGET_TABLE.to_owned());
        assert_eq!(accepted_keys("not_a_setting = 1\n"), top);
        assert_eq!(
            accepted_keys("[[target]]\nnot_a_setting = 1\n"),
            want(|s| s.in_file.target())
        );
    }

    #[test]
    fn mistakes_name_the_file_and_line() {
        let e = error_of(
            "app_id = 1\nprivate_key_file = \"/k\"\nbogus = 1\n[[target]]\nname = \"a\"\ninstallation_id = 1\n",
        );
        assert!(
            e.starts_with("/etc/gtr.toml:3:") && e.contains("bogus"),
            "{e}"
        );
        let e = error_of(
            "app_id = 1\nprivate_key_file = \"/k\"\n[[target]]\nname = \"a\"\ninstallation_id = 1\n[[target]]\nname = \"a\"\ninstallation_id = 2\n",
        );
        assert!(
            e.starts_with("/etc/gtr.toml:7:") && e.contains("used twice (first at line 3)"),
            "{e}"
        );
        let e = error_of(
            "app_id = 1\nprivate_key_file = \"/k\"\n[[target]]\nname = \"a\"\ninstallation_id = 1\noutput = \"/t.json\"\n[[target]]\nname = \"b\"\ninstallation_id = 2\noutput = \"/t.json\"\n",
        );
        assert!(
            e.starts_with("/etc/gtr.toml:10:") && e.contains("both write '/t.json'"),
            "{e}"
        );
        let e = error_of("app_id = 1\nprivate_key_file = \"/k\"\n[[target]]\nname = \"a\"\n");
        assert!(
            e.starts_with("/etc/gtr.toml:3:") && e.contains("no installation given"),
            "{e}"
        );
        let e = error_of(
            "app_id = 1\nprivate_key_file = \"/k\"\n[[target]]\nname = \"a\"\nowner = \"x\"\nrepo = \"x/y\"\n",
        );
        assert!(e.contains("only one"), "{e}");
        let e = error_of(
            "app_id = 1\nprivate_key_file = \"/k\"\njitter = \"5\"\n[[target]]\nname = \"a\"\ninstallation_id = 1\n",
        );
        assert!(e.starts_with("/etc/gtr.toml:3: jitter '5'"), "{e}");
        let e = error_of(
            "app_id = 1\nprivate_key_file = \"/k\"\n[[target]]\nname = \"a\"\ninstallation_id = 1\nmode = \"0644\"\n",
        );
        assert!(e.starts_with("/etc/gtr.toml:6: mode"), "{e}");
        let e =
            error_of("private_key_file = \"/k\"\n[[target]]\nname = \"a\"\ninstallation_id = 1\n");
        assert!(e.contains("no app_id"), "{e}");
        assert!(error_of("app_id = 1\n").contains("no [[target]] table"));
        let e = error_of(
            "app_id = 1\nprivate_key_file = \"/k\"\n[[target]]\nname = \"a\"\ninstallation_id = 1\noutput = \"rel.json\"\n",
        );
        assert!(e.contains("absolute"), "{e}");
        let no_key = "app_id = 1\n[[target]]\nname = \"a\"\ninstallation_id = 1\n";
        assert!(error_of(no_key).contains("no private_key_file"));
        assert!(
            parse_with(no_key, Path::new("/x"), &env(), true).is_ok(),
            "status needs no key"
        );
        let e = error_of("app_id = [\n");
        assert!(e.starts_with("/etc/gtr.toml:"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }

    /// A group name goes through the injected lookup (never /etc/group in a unit test).
    #[test]
    fn group_names_are_looked_up_through_the_host() {
        let file = |group: &str| {
            format!(
                "app_id = 1\nprivate_key_file = \"/k\"\nmode = \"0640\"\ngroup = \"{group}\"\n\
                 [[target]]\nname = \"a\"\ninstallation_id = 1\n"
            )
        };
        let c = parse_str(&file("agents")).unwrap();
        assert_eq!(c.targets[0].file.gid, Some(4242));
        let e = error_of(&file("nobody-here"));
        assert!(e.contains("group 'nobody-here' not found"), "{e}");
    }

    /// Like the flags, a file reports every mistake at once, one line each with its line
    /// number: of the file's own keys, of each target, and within one target.
    #[test]
    fn every_mistake_of_a_file_in_one_error() {
        let e = parse_str(
            "app_id = 1\nprivate_key_file = \"/k\"\nhttp_timeout = \"soon\"\n\
             metrics_file = \"m.prom\"\n\
             [[target]]\nname = \"a\"\ninstallation_id = \"x\"\njitter = \"often\"\n\
             [[target]]\nname = \"b\"\nowner = \"o\"\noutput = \"rel\"\n\
             [[target]]\nname = \"b\"\nowner = \"o\"\n",
        )
        .unwrap_err();
        let lines: Vec<&str> = e.problems().collect();
        let want = [
            "/etc/gtr.toml:3: http_timeout: expected a duration",
            "/etc/gtr.toml:4: metrics_file must be an absolute path",
            "/etc/gtr.toml:5: target 'a': installation_id 'x'",
            "/etc/gtr.toml:8: jitter 'often'",
            "/etc/gtr.toml:12: target 'b': output must be an absolute path",
            "/etc/gtr.toml:14: target name 'b' is used twice",
        ];
        assert_eq!(lines.len(), want.len(), "{e}");
        for (line, want) in lines.iter().zip(want) {
            assert!(line.starts_with(want), "{line}\n(want {want})");
        }
    }

    #[test]
    fn errors_name_keys_as_the_file_spells_them() {
        let head = "app_id = 1\nprivate_key_file = \"/k\"\n";
        for (text, want) in [
            (
                "jitter = \"10m\"\nrefresh_interval = \"5m\"\n[[target]]\nname = \"a\"\ninstallation_id = 1\n",
                "jitter 10m must be shorter than refresh_interval 5m",
            ),
            (
                "[[target]]\nname = \"a\"\ninstallation_id = 1\nowner = \"o\"\n",
                "installation_id, owner and repo choose",
            ),
            (
                "[[target]]\nname = \"a\"\ninstallation_id = \"x\"\n",
                "installation_id 'x': expected a number",
            ),
            (
                "[[target]]\nname = \"a\"\nowner = \"o\"\nrepositories = [\"x/a\"]\n",
                "repositories 'x/a': list repository names",
            ),
            (
                "[[target]]\nname = \"a\"\nowner = \"o\"\npermissions = { contents = \"rw\" }\n",
                "permissions: level 'rw' for contents",
            ),
        ] {
            let e = error_of(&format!("{head}{text}"));
            assert!(e.contains(want) && !e.contains("--"), "{e}");
        }
        let e = error_of(
            "app_id = 1\nprivate_key_file = \"/k\"\nrefresh_interval = \"5\"\n[[target]]\nname = \"a\"\ninstallation_id = 1\n",
        );
        assert!(e.contains(": refresh_interval '5'"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,300}") {
            let _ = parse_str(&text);
        }

        #[test]
        fn never_panics_on_near_valid_files(cut in 0usize..400) {
            let text: String = GOOD.chars().take(cut).collect();
            let _ = parse_str(&text);
        }
    }
}
