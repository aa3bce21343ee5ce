//! github-token-refresher: keeps a GitHub App installation token fresh in a JSON file, so
//! that sandboxes, containers and agents always have a valid token without ever holding the
//! App's private key. The binary only calls [`main_with_args`]; everything lives here.

#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod consumer;
pub mod daemon;
pub mod durations;
pub mod error;
pub mod fingerprint;
pub mod github;
pub mod jwt;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod pull;
pub mod refresh;
pub mod revoke;
pub mod sanitize;
pub mod schedule;
pub mod secret;
pub mod token_file;
pub mod wake;

use std::ffi::OsString;
use std::sync::Arc;

use crate::cli::{Cli, Command, ConfigArgs};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError, HostEnv, Source};
use crate::error::exit;
use crate::refresh::Resources;

/// Parse the command line, run the command, return the exit status.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> i32 {
    let args: Vec<OsString> = args.into_iter().collect();
    // installed (or symlinked) as git-credential-github-token-refresher: git's helper
    if args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        == Some(std::ffi::OsStr::new(consumer::GIT_CREDENTIAL_NAME))
    {
        return consumer::git_credential_main(args);
    }
    let cli = match parse(args.clone()) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // the in-container commands read one file: no logging setup, no runtime
    match cli.command {
        Command::Consumer(c) => consumer::run(c),
        Command::Completions(a) => commands::docs::completions(a.shell),
        Command::Manpage(a) => commands::docs::manpage(a.dir.as_deref()),
        Command::Fingerprint => fingerprint::main(),
        Command::Check(cli::CheckArgs {
            env_file: Some(file),
            ..
        }) => commands::check::rerun_with_env_file(&file, &args),
        host => host_main(host),
    }
}

/// The host-side commands: logging, the process hardened before any of them reads the key,
/// one current-thread runtime.
fn host_main(command: Command) -> i32 {
    logging::init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("github-token-refresher: cannot start the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    if matches!(
        command,
        Command::Run(_) | Command::Once(_) | Command::Check(_)
    ) {
        harden_process();
    }
    match command {
        Command::Run(args) => runtime.block_on(run(args, clock)),
        Command::Once(args) => runtime.block_on(once(args, clock)),
        Command::Check(args) => {
            let config = read_config(&args.config);
            let report = commands::check::Report::from_flags(args.json, args.paths);
            runtime.block_on(commands::check::run(config, clock, args.offline, report))
        }
        Command::Status(args) => status(&args),
        Command::Revoke(args) => runtime.block_on(revoke::main(args)),
        Command::Consumer(_)
        | Command::Completions(_)
        | Command::Manpage(_)
        | Command::Fingerprint => unreachable!("dispatched above"),
    }
}

/// The command line, or the exit status after clap has printed help, the version or the
/// usage error.
fn parse(args: Vec<OsString>) -> Result<Cli, i32> {
    Cli::parse_args(args).map_err(|e| {
        use clap::error::ErrorKind;
        let code = match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => exit::OK,
            _ => exit::CONFIG,
        };
        let _ = e.print();
        code
    })
}

async fn once(args: ConfigArgs, clock: Arc<dyn Clock>) -> i32 {
    match load(&args) {
        Ok((config, _)) if config.targets.iter().any(|t| !t.writes_file) => {
            config_failure(&ConfigError(
                "once writes token files, and a target with a socket but no output has \
                 none: give it --output (or output = …), or serve it with run"
                    .into(),
            ))
        }
        Ok((config, res)) => commands::once::run(config, res, clock).await,
        Err(e) => config_failure(&e),
    }
}

fn config_failure(e: &ConfigError) -> i32 {
    for problem in e.problems() {
        eprintln!("github-token-refresher: {problem}");
    }
    exit::CONFIG
}

/// The configuration from `--config FILE`, or else from the single-target flags, with
/// `--metrics-file` over the file's `metrics_file`. Read once per start and per reload.
fn read_config(args: &ConfigArgs) -> Result<Config, ConfigError> {
    let env = HostEnv::from_process();
    let mut config = match &args.config {
        Some(path) if !path.as_os_str().is_empty() => {
            let flags = args.single_target_flags();
            if !flags.is_empty() {
                return Err(ConfigError(format!(
                    "{} and {} can't be combined: put every setting in the file \
                     (check the environment too: GITHUB_APP_ID and friends count as flags)",
                    args.spelling().quoted("config", path.display()),
                    flags.join(", ")
                )));
            }
            config::file::load(path, &env)?
        }
        _ => args.raw().into_config(&env)?,
    };
    if let Some(flag) = args
        .metrics_file
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty())
    {
        config.metrics_file = Some(flag.clone());
    }
    Ok(config)
}

/// Configuration, keys and a writable output directory, or the reason why not.
fn load(args: &ConfigArgs) -> Result<(Config, Resources), ConfigError> {
    let config = read_config(args)?;
    let res = Resources::load(&config, None)?;
    // a file's target has always been named `--output` here too
    let sp = match config.source {
        Source::Flags => args.spelling(),
        Source::File(_) => config::Spelling::FLAGS,
    };
    for t in config.targets.iter().filter(|t| t.writes_file) {
        commands::check::output_writable(&t.output, t.file).map_err(|e| {
            ConfigError(format!("{}: {e}", sp.quoted("output", t.output.display())))
        })?;
    }
    Ok((config, res))
}

async fn run(args: ConfigArgs, clock: Arc<dyn Clock>) -> i32 {
    let (config, res) = match load(&args) {
        Ok(loaded) => loaded,
        Err(e) => {
            for problem in e.problems() {
                tracing::error!("{problem}");
            }
            return exit::CONFIG;
        }
    };
    if let Some(path) = &config.metrics_file
        && let Err(e) = metrics::check_path(path)
    {
        tracing::error!("{e}");
        return exit::CONFIG;
    }
    // before anything else runs: binding sets the process's umask for a moment
    let mut pull = match pull::Pull::start(&config, &res, clock.clone()) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{e}");
            return exit::CONFIG;
        }
    };
    if matches!(config.source, Source::File(_)) {
        // flags cannot change under a running daemon; a targets file can
        let pull_args = args.clone();
        pull.follow_reloads(
            Box::new(move || read_config(&pull_args)),
            res.clone(),
            clock.clone(),
        );
    }
    let loader: daemon::Loader = Box::new(move || read_config(&args));
    let daemon = daemon::Daemon::new(config, res, loader, clock);
    let code = daemon.run().await;
    pull.stop().await;
    code
}

/// No core dumps of a process that holds the key and tokens (prctl PR_SET_DUMPABLE 0; this
/// also keeps other processes of the same user from ptrace-attaching and from reading its
/// /proc/PID/mem or environ). Every command that loads the key calls it first.
fn harden_process() {
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        tracing::warn!("cannot make the process non-dumpable: {e}");
    }
}

fn status(args: &cli::StatusArgs) -> i32 {
    let min = match durations::parse_duration(&args.min_remaining) {
        Ok(d) => d,
        Err(why) => {
            return config_failure(&ConfigError(format!(
                "--min-remaining '{}': {why}",
                args.min_remaining
            )));
        }
    };
    let env = HostEnv::from_process();
    let now = chrono::Utc::now();
    if let Some(path) = args.config.as_ref().filter(|p| !p.as_os_str().is_empty()) {
        let file = match config::file::load_for_status(path, &env) {
            Ok(f) => f,
            Err(e) => return config_failure(&e),
        };
        let mut worst = exit::OK;
        let mut all = Vec::new();
        for t in file.targets.iter().filter(|t| t.writes_file) {
            let (text, mut json, code) = commands::status::report(&t.output, min, now);
            json["name"] = t.name.clone().into();
            if !args.json {
                println!("{}: {text}", t.name);
            }
            all.push(json);
            worst = worst.max(code);
        }
        if args.json {
            println!("{}", serde_json::Value::Array(all));
        }
        return worst;
    }
    let path = match (&args.output, env.default_output(None)) {
        (Some(p), _) if !p.as_os_str().is_empty() => p.clone(),
        (_, Some(default)) => default,
        _ => {
            return config_failure(&ConfigError(
                "--file is not set and XDG_RUNTIME_DIR is unset: pass --file PATH \
                 (or set GITHUB_TOKEN_FILE) to say which token file to read"
                    .into(),
            ));
        }
    };
    let (text, json, code) = commands::status::report(&path, min, now);
    if args.json {
        println!("{json}");
    } else {
        println!("{text}");
    }
    code
}
