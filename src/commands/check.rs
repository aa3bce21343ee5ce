//! `check`: a doctor for a new user. Each step prints `ok` or `FAIL` on its own line, with a
//! hint for the fix; steps that depend on a failed one are skipped. Exit 0 only when all pass.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::{Config, ConfigError, InstallationRef, Target};
use crate::error::exit;
use crate::jwt;
use crate::refresh::{Ctx, RefreshError, Resources};
use crate::token_file;

struct Doctor {
    code: i32,
}

impl Doctor {
    fn ok(&self, what: &str) {
        println!("ok    {what}");
    }

    fn fail(&mut self, what: &str, error: &str, hint: Option<&str>, code: i32) {
        println!("FAIL  {what}: {error}");
        if let Some(h) = hint {
            println!("      hint: {h}");
        }
        if self.code == exit::OK {
            self.code = code;
        }
    }

    fn fail_refresh(&mut self, what: &str, e: &RefreshError) {
        let hint = match e {
            RefreshError::Github(g) => g.hint(),
            _ => None,
        };
        self.fail(what, &e.to_string(), hint, super::once::exit_code(e));
    }
}

/// Run the checks. `config` is the result of parsing, so that a bad flag is reported as the
/// first failed step rather than before the doctor starts.
/// `offline` stops each target after its settings and key: nothing reaches the network or
/// the file system beyond reading the key.
pub async fn run(config: Result<Config, ConfigError>, clock: Arc<dyn Clock>, offline: bool) -> i32 {
    let mut doc = Doctor { code: exit::OK };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            // every problem at once: a new user fixes them in one go, not one per run
            for problem in e.problems() {
                doc.fail("configuration", problem, None, exit::CONFIG);
            }
            println!("      hint: see `github-token-refresher check --help`");
            return doc.code;
        }
    };
    for target in &config.targets {
        if config.targets.len() > 1 {
            println!("[{}]", target.name);
        }
        check_target(&mut doc, &config, target, clock.clone(), offline).await;
    }
    if doc.code == exit::OK && offline {
        println!("settings and key valid (offline: GitHub and the output directory not checked)");
    } else if doc.code == exit::OK {
        println!("all checks passed");
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
    let key_path = &target.app.key_file;
    if let Err(e) = jwt::load_key(key_path) {
        doc.fail("private key", &e.0, None, exit::CONFIG);
        return;
    }
    doc.ok(&format!(
        "private key '{}': owner-only, RSA key parses",
        key_path.display()
    ));
    if offline {
        return;
    }
    let single = config.only(target);
    let res = match Resources::load(&single, None) {
        Ok(r) => r,
        Err(e) => {
            doc.fail("HTTP client", &e.0, None, exit::FAILURE);
            return;
        }
    };
    let ctx = Ctx::new(&res, target, clock);
    let c = &ctx.client;
    match ctx.with_jwt(|jwt| async move { c.app(&jwt).await }).await {
        Ok(app) => doc.ok(&format!(
            "GitHub accepts the App JWT: App \"{}\" ({}, id {})",
            app.name, app.slug, app.id
        )),
        Err(e) => return doc.fail_refresh("GitHub accepts the App JWT (GET /app)", &e),
    }
    let inst = match ctx.resolve(&target.installation).await {
        Ok(i) => i,
        Err(e) => {
            let what = match &target.installation {
                InstallationRef::Id(id) => format!("installation {id} resolves"),
                other => format!("{other} resolves"),
            };
            return doc.fail_refresh(&what, &e);
        }
    };
    doc.ok(&format!(
        "installation {} on {} ({}), repository selection: {}",
        inst.id, inst.account, inst.account_type, inst.repository_selection
    ));
    let token = match ctx.mint(target, inst.id).await {
        Ok(t) => t,
        Err(e) => return doc.fail_refresh("mint a token with the requested scope", &e),
    };
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
    doc.ok(&format!(
        "minted a token: permissions {}; repositories {scope}; fingerprint {}",
        if perms.is_empty() {
            "-".into()
        } else {
            perms.join(",")
        },
        crate::fingerprint::of(token.token.expose())
    ));
    match ctx.verify(&token).await {
        Ok(n) => doc.ok(&format!(
            "the token works: GET /installation/repositories lists {n} repositories"
        )),
        Err(e) => doc.fail_refresh(
            "the token works (GET /installation/repositories)",
            &RefreshError::Github(e),
        ),
    }
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
