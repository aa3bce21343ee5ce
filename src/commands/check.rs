//! `check`: a doctor for a new user. Each step prints `ok` or `FAIL` on its own line, with a
//! hint for the fix; steps that depend on a failed one are skipped. Exit 0 only when all pass.
//! `--json` reports the same steps with each target's install plan (`super::plan`) as one
//! document; `--paths` prints only the plan's paths.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use crate::clock::Clock;
use serde::Serialize;

use super::plan;
use crate::config::{Config, ConfigError, InstallationRef, Target};
use crate::error::exit;
use crate::jwt;
use crate::refresh::{Ctx, RefreshError, Resources};
use crate::token_file;

/// How `check` reports: lines for people, one JSON document, or only the paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Text,
    Json,
    Paths,
}

impl Report {
    pub fn from_flags(json: bool, paths: bool) -> Report {
        match (json, paths) {
            (_, true) => Report::Paths,
            (true, _) => Report::Json,
            _ => Report::Text,
        }
    }
}

/// One check's result, as `--json` reports it.
#[derive(Debug, Serialize)]
struct Step {
    what: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
}

struct Doctor {
    code: i32,
    report: Report,
    /// The steps of each target in turn; index 0 holds the configuration's problems.
    steps: Vec<Vec<Step>>,
}

impl Doctor {
    fn new(report: Report) -> Doctor {
        Doctor {
            code: exit::OK,
            report,
            steps: vec![Vec::new()],
        }
    }

    fn say(&self, line: &str) {
        if self.report == Report::Text {
            println!("{line}");
        }
    }

    fn record(&mut self, step: Step) {
        self.steps.last_mut().expect("never empty").push(step);
    }

    fn ok(&mut self, what: &str) {
        self.say(&format!("ok    {what}"));
        self.record(Step {
            what: what.into(),
            ok: true,
            error: None,
            hint: None,
        });
    }

    fn fail(&mut self, what: &str, error: &str, hint: Option<&str>, code: i32) {
        self.say(&format!("FAIL  {what}: {error}"));
        if let Some(h) = hint {
            self.say(&format!("      hint: {h}"));
        }
        if self.code == exit::OK {
            self.code = code;
        }
        self.record(Step {
            what: what.into(),
            ok: false,
            error: Some(error.into()),
            hint: hint.map(Into::into),
        });
    }

    fn fail_refresh(&mut self, what: &str, e: &RefreshError) {
        let verdict = crate::error::of_refresh(e);
        self.fail(what, &e.to_string(), verdict.hint, verdict.exit);
    }

    /// The `--json` document: the plan of each target with its checks.
    fn json(&self, targets: &[Target], offline: bool) -> serde_json::Value {
        let targets: Vec<serde_json::Value> = targets
            .iter()
            .zip(self.steps.iter().skip(1))
            .map(|(t, steps)| {
                let mut v = serde_json::to_value(plan::of(t)).unwrap_or_default();
                v["checks"] = serde_json::to_value(steps).unwrap_or_default();
                v
            })
            .collect();
        serde_json::json!({
            "version": plan::VERSION,
            "ok": self.code == exit::OK,
            "exit": self.code,
            "offline": offline,
            "problems": self.steps[0],
            "targets": targets,
        })
    }
}

/// Run the checks. `config` is the result of parsing, so that a bad flag is reported as the
/// first failed step rather than before the doctor starts.
/// `offline` stops each target after its settings and key: nothing reaches the network or
/// the file system beyond reading the key.
pub async fn run(
    config: Result<Config, ConfigError>,
    clock: Arc<dyn Clock>,
    offline: bool,
    report: Report,
) -> i32 {
    let mut doc = Doctor::new(report);
    let config = match config {
        Ok(c) => c,
        Err(e) => return config_failed(doc, &e, offline),
    };
    if report == Report::Paths {
        return match plan::paths_lines(&config.targets) {
            Ok(lines) => {
                print!("{lines}");
                exit::OK
            }
            Err(e) => {
                eprintln!("github-token-refresher: {e}");
                exit::CONFIG
            }
        };
    }
    for target in &config.targets {
        if config.targets.len() > 1 {
            doc.say(&format!("[{}]", target.name));
        }
        doc.steps.push(Vec::new());
        check_target(&mut doc, &config, target, clock.clone(), offline).await;
    }
    if report == Report::Json {
        println!("{}", doc.json(&config.targets, offline));
    } else if doc.code == exit::OK && offline {
        println!("settings and key valid (offline: GitHub and the output directory not checked)");
    } else if doc.code == exit::OK {
        println!("all checks passed");
    }
    doc.code
}

/// Every problem at once: a new user fixes them in one go, not one per run.
fn config_failed(mut doc: Doctor, e: &ConfigError, offline: bool) -> i32 {
    if doc.report == Report::Paths {
        for problem in e.problems() {
            eprintln!("github-token-refresher: {problem}");
        }
        return exit::CONFIG;
    }
    for problem in e.problems() {
        doc.fail("configuration", problem, None, exit::CONFIG);
    }
    doc.say("      hint: see `github-token-refresher check --help`");
    if doc.report == Report::Json {
        println!("{}", doc.json(&[], offline));
    }
    doc.code
}

async fn check_target(
    doc: &mut Doctor,
    config: &Config,
    target: &Target,
    clock: Arc<dyn Clock>,
    offline: bool,
) {
    doc.ok(&format!(
        "configuration complete: app {}, {}, API {}",
        target.app.app_id, target.installation, target.api_url
    ));
    if !check_key(doc, target) || offline {
        return;
    }
    let res = match Resources::load(&config.only(target), None) {
        Ok(r) => r,
        Err(e) => return doc.fail("HTTP client", &e.0, None, exit::FAILURE),
    };
    let ctx = Ctx::new(&res, target, clock);
    if check_github(doc, &ctx, target).await {
        check_output(doc, target);
    }
}

/// The key file: owner-only, an RSA private key. False when it fails.
fn check_key(doc: &mut Doctor, target: &Target) -> bool {
    let key_path = &target.app.key_file;
    if let Err(e) = jwt::load_key(key_path) {
        doc.fail("private key", &e.0, None, exit::CONFIG);
        return false;
    }
    doc.ok(&format!(
        "private key '{}': owner-only, RSA key parses",
        key_path.display()
    ));
    true
}

/// The pipeline's steps one by one, each reported: GitHub accepts the JWT, the
/// installation resolves, a token is minted with the scope, the token works. False when a
/// step the later ones need fails.
async fn check_github(doc: &mut Doctor, ctx: &Ctx, target: &Target) -> bool {
    let c = &ctx.client;
    match ctx.with_jwt(|jwt| async move { c.app(&jwt).await }).await {
        Ok(app) => doc.ok(&format!(
            "GitHub accepts the App JWT: App \"{}\" ({}, id {})",
            app.name, app.slug, app.id
        )),
        Err(e) => {
            doc.fail_refresh("GitHub accepts the App JWT (GET /app)", &e);
            return false;
        }
    }
    let inst = match ctx.resolve(&target.installation).await {
        Ok(i) => i,
        Err(e) => {
            let what = match &target.installation {
                InstallationRef::Id(id) => format!("installation {id} resolves"),
                other => format!("{other} resolves"),
            };
            doc.fail_refresh(&what, &e);
            return false;
        }
    };
    doc.ok(&format!(
        "installation {} on {} ({}), repository selection: {}",
        inst.id, inst.account, inst.account_type, inst.repository_selection
    ));
    let token = match ctx.mint(target, inst.id).await {
        Ok(t) => t,
        Err(e) => {
            doc.fail_refresh("mint a token with the requested scope", &e);
            return false;
        }
    };
    doc.ok(&minted_line(&token));
    match ctx.verify(&token).await {
        Ok(n) => doc.ok(&format!(
            "the token works: GET /installation/repositories lists {n} repositories"
        )),
        Err(e) => doc.fail_refresh(
            "the token works (GET /installation/repositories)",
            &RefreshError::Github(e),
        ),
    }
    true
}

/// `minted a token: permissions …; repositories …; fingerprint …`
fn minted_line(token: &crate::github::AccessToken) -> String {
    let perms: Vec<String> = token
        .permission_levels()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let scope = match &token.repositories {
        Some(rs) => rs
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(","),
        None => format!("all ({})", token.repository_selection),
    };
    format!(
        "minted a token: permissions {}; repositories {scope}; fingerprint {}",
        if perms.is_empty() {
            "-".into()
        } else {
            perms.join(",")
        },
        crate::fingerprint::of(token.token.expose())
    )
}

fn check_output(doc: &mut Doctor, target: &Target) {
    match output_writable(&target.output, target.file) {
        Ok(()) => doc.ok(&format!(
            "output directory '{}' is writable",
            target.output.parent().unwrap_or(Path::new(".")).display()
        )),
        Err(e) => doc.fail(
            "output directory",
            &e,
            Some("choose another --output, or fix the directory's owner and mode"),
            exit::CONFIG,
        ),
    }
}

/// `check --env-file FILE`: the same `check` again in a child whose environment also holds
/// FILE's assignments (overriding the inherited ones), as systemd's `EnvironmentFile=` hands
/// them to the service. A child process, because this process cannot change its own
/// environment safely; its exit status is the answer.
pub fn rerun_with_env_file(file: &Path, args: &[std::ffi::OsString]) -> i32 {
    let shown = file.display();
    let text = match fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "github-token-refresher: --env-file '{shown}': {e}; name the unit's environment \
                 file (e.g. ~/.config/github-token-refresher/env)"
            );
            return exit::CONFIG;
        }
    };
    let parsed = crate::config::env_file::parse(&text);
    for why in &parsed.ignored {
        eprintln!("github-token-refresher: warning: --env-file '{shown}': {why}");
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!(
                "github-token-refresher: --env-file: cannot find this program to run it again: {e}"
            );
            return exit::FAILURE;
        }
    };
    match std::process::Command::new(exe)
        .args(without_env_file(args.iter().skip(1)))
        .envs(parsed.vars)
        .status()
    {
        Ok(status) => status.code().unwrap_or(exit::FAILURE),
        Err(e) => {
            eprintln!("github-token-refresher: --env-file: cannot run check again: {e}");
            exit::FAILURE
        }
    }
}

/// The arguments without `--env-file FILE` / `--env-file=FILE`.
fn without_env_file<'a>(
    args: impl Iterator<Item = &'a std::ffi::OsString>,
) -> Vec<&'a std::ffi::OsString> {
    let mut out = Vec::new();
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--env-file") => {
                args.next();
            }
            Some(s) if s.starts_with("--env-file=") => {}
            _ => out.push(a),
        }
    }
    out
}

/// Create the directory if needed and prove a file can be created there.
pub fn output_writable(path: &Path, opts: token_file::FileOptions) -> Result<(), String> {
    token_file::prepare_dir(path, opts).map_err(|e| e.to_string())?;
    let probe = path.with_file_name(format!(
        ".check-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|_| fs::remove_file(&probe))
        .map_err(|e| {
            format!(
                "cannot create files in '{}': {e}",
                probe.parent().unwrap_or(Path::new(".")).display()
            )
        })
}
