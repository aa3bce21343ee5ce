//! The command line (clap derive). Every configuration flag also reads an environment
//! variable, so systemd's `EnvironmentFile=` and containers configure it the same way.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::settings::SETTINGS;
use crate::config::{Origins, RawConfig, Spelling};

pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0   ok (status: the token is valid)
  1   other error (status: the token is expired or expires within --min-remaining)
  2   status: the token file is missing or unreadable
  69  GitHub unreachable or unavailable (once, check)
  78  configuration error: bad flag, missing/unsafe/unparseable key, or a GitHub answer that
      retrying won't fix (401, 404, 422); systemd units don't restart on it";

#[derive(Debug, Parser)]
#[command(
    name = "github-token-refresher",
    version,
    about = "Keep a GitHub App installation token fresh in a JSON file, for sandboxes, \
             containers and agents that must never hold the App's private key",
    after_help = EXIT_STATUS_HELP,
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: mint a token about every 45 minutes and keep the file fresh
    #[command(after_help = EXIT_STATUS_HELP, args_override_self = true)]
    Run(ConfigArgs),
    /// Mint and write one token, then exit (cron, init containers, manual fixes)
    #[command(after_help = EXIT_STATUS_HELP, args_override_self = true)]
    Once(ConfigArgs),
    /// Say whether the token file holds a valid token, for whom and until when
    #[command(after_help = EXIT_STATUS_HELP, args_override_self = true)]
    Status(StatusArgs),
    /// Check the configuration step by step against GitHub, with a hint for each failure
    #[command(after_help = EXIT_STATUS_HELP, args_override_self = true)]
    Check(CheckArgs),
    /// Revoke the token in a token file now (DELETE /installation/token), e.g. when a
    /// sandbox that read it is gone
    #[command(after_help = crate::revoke::REVOKE_EXIT_HELP, args_override_self = true)]
    Revoke(crate::revoke::RevokeArgs),
    /// Print the fingerprint (start of the SHA-256) of a token, or of a token file's token,
    /// read on stdin: the name logs, `status` and the token file use for it
    Fingerprint,
    #[command(flatten)]
    Consumer(crate::consumer::ConsumerCommand),
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell
    #[command(after_help = COMPLETIONS_HELP)]
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write one page per command into a directory
    #[command(after_help = "Read it: github-token-refresher manpage | man -l -")]
    Manpage(ManpageArgs),
}

const COMPLETIONS_HELP: &str = "\
Install for your user (setup.sh does this):
  bash  github-token-refresher completions bash >~/.local/share/bash-completion/completions/github-token-refresher
  zsh   github-token-refresher completions zsh >~/.local/share/zsh/site-functions/_github-token-refresher
        (that directory in $fpath before compinit)
  fish  github-token-refresher completions fish >~/.config/fish/completions/github-token-refresher.fish";

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Args)]
pub struct ManpageArgs {
    /// Write github-token-refresher.1 and a page per command (github-token-refresher-run.1, …)
    /// into this directory instead of printing the main page
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Check only what needs no network: the settings and the private key (setup.sh
    /// --dry-run uses it)
    #[arg(long)]
    pub offline: bool,
    /// Print one JSON document instead of lines: each target's plan (output, socket, key,
    /// the paths its service must reach) with every check's result (schema in
    /// docs/install.md)
    #[arg(long, conflicts_with = "paths")]
    pub json: bool,
    /// Only print each target's paths as `TARGET<TAB>KIND<TAB>PATH` lines (KIND: output,
    /// output-dir, socket, socket-dir, key), for scripts; checks nothing beyond the settings
    #[arg(long)]
    pub paths: bool,
    /// Also read the settings from FILE, a systemd environment file (the unit's
    /// `EnvironmentFile=`, e.g. ~/.config/github-token-refresher/env), read as systemd reads
    /// it; its assignments override the environment
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// App ID (digits) or Client ID (Iv…), used as the JWT issuer
    #[arg(long, env = "GITHUB_APP_ID", value_name = "ID")]
    pub app_id: Option<String>,
    /// The App's private key, PEM (PKCS#1 or PKCS#8), mode 0600 [default:
    /// $CREDENTIALS_DIRECTORY/github-app.pem when present]
    #[arg(long, env = "GITHUB_APP_PRIVATE_KEY_FILE", value_name = "PATH")]
    pub private_key_file: Option<PathBuf>,
    /// Installation ID
    #[arg(long, env = "GITHUB_APP_INSTALLATION_ID", value_name = "N")]
    pub installation_id: Option<String>,
    /// Find the installation on this organization or user
    #[arg(long, env = "GITHUB_APP_OWNER", value_name = "NAME")]
    pub owner: Option<String>,
    /// Find the installation on this repository
    #[arg(long, env = "GITHUB_APP_REPO", value_name = "OWNER/NAME")]
    pub repo: Option<String>,
    /// Restrict the token to these repositories (names, comma-separated)
    #[arg(long, env = "GITHUB_TOKEN_REPOSITORIES", value_name = "A,B")]
    pub repositories: Option<String>,
    /// Restrict the token's permissions, e.g. contents=read,pull_requests=write
    #[arg(long, env = "GITHUB_TOKEN_PERMISSIONS", value_name = "NAME=LEVEL,…")]
    pub permissions: Option<String>,
    /// The token file [default: $XDG_RUNTIME_DIR/github-token-refresher/token.json]
    #[arg(long, env = "GITHUB_TOKEN_FILE", value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// REST API base URL [default: https://api.github.com]; GitHub Enterprise Server:
    /// https://HOST/api/v3
    #[arg(long, env = "GITHUB_API_URL", value_name = "URL")]
    pub api_url: Option<String>,
    /// Time between refreshes [default: 45m]
    #[arg(long, env = "GITHUB_TOKEN_REFRESH_INTERVAL", value_name = "DURATION")]
    pub refresh_interval: Option<String>,
    /// Random ± spread around the interval [default: 2m]
    #[arg(long, env = "GITHUB_TOKEN_REFRESH_JITTER", value_name = "DURATION")]
    pub jitter: Option<String>,
    /// Refresh no later than this long before the token expires [default: 10m]
    #[arg(long, env = "GITHUB_TOKEN_MIN_REMAINING", value_name = "DURATION")]
    pub min_remaining: Option<String>,
    /// Give up on one HTTP request after this long [default: 30s]
    #[arg(long, env = "GITHUB_HTTP_TIMEOUT", value_name = "DURATION")]
    pub http_timeout: Option<String>,
    /// Revoke the token and remove the file when the daemon stops (SIGTERM); a restart
    /// is a stop too (see docs/revocation.md) [default: false]
    #[arg(long, env = "GITHUB_TOKEN_REVOKE_ON_STOP", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub revoke_on_stop: Option<String>,
    /// Revoke the previous token this long after its successor was published, e.g. 5m
    /// [default: never; it expires on its own within the hour]
    #[arg(
        long,
        env = "GITHUB_TOKEN_REVOKE_SUPERSEDED_AFTER",
        value_name = "DURATION"
    )]
    pub revoke_superseded_after: Option<String>,
    /// Pull mode: serve tokens on this Unix socket (`curl --unix-socket PATH
    /// http://localhost/token`); without --output, minted on first request only (see
    /// docs/pull-mode.md)
    #[arg(long, env = "GITHUB_TOKEN_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// `run`: write Prometheus metrics to this file after every change, for
    /// node_exporter's textfile collector (name it *.prom; the directory must exist)
    #[arg(long, env = "GITHUB_TOKEN_METRICS_FILE", value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Many targets from a TOML file instead of the flags above (see README)
    #[arg(long, env = "GITHUB_TOKEN_REFRESHER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Which of the above the environment gave (filled in by [`Cli::parse_args`]).
    #[arg(skip)]
    pub origins: Origins,
}

impl Cli {
    /// Parse `args` as `Cli::try_parse_from` does, and record where clap found each setting
    /// of `run`, `once` and `check`: the command line or the environment, so that an error
    /// names it as the user wrote it (`--app-id` or `GITHUB_APP_ID`).
    pub fn parse_args(
        args: impl IntoIterator<Item = std::ffi::OsString>,
    ) -> Result<Cli, clap::Error> {
        let mut command = Cli::command();
        let matches = command.try_get_matches_from_mut(args)?;
        let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
        let config = match &mut cli.command {
            Command::Run(c) | Command::Once(c) => Some(c),
            Command::Check(c) => Some(&mut c.config),
            _ => None,
        };
        if let (Some(config), Some((_, sub))) = (config, matches.subcommand()) {
            config.origins = origins(sub);
        }
        Ok(cli)
    }
}

/// The settings clap took from their environment variable in `matches` (a subcommand's that
/// has every setting's argument, named as the setting: `settings` tests that).
fn origins(matches: &ArgMatches) -> Origins {
    SETTINGS
        .iter()
        .filter(|s| s.flag.is_some())
        .filter(|s| matches.value_source(s.name) == Some(ValueSource::EnvVariable))
        .fold(Origins::COMMAND_LINE, |o, s| o.with_env(s.name))
}

impl ConfigArgs {
    pub fn raw(&self) -> RawConfig {
        RawConfig {
            app_id: self.app_id.clone(),
            private_key_file: self.private_key_file.clone(),
            installation_id: self.installation_id.clone(),
            owner: self.owner.clone(),
            repo: self.repo.clone(),
            repositories: self.repositories.clone(),
            permissions: self.permissions.clone(),
            output: self.output.clone(),
            api_url: self.api_url.clone(),
            refresh_interval: self.refresh_interval.clone(),
            jitter: self.jitter.clone(),
            min_remaining: self.min_remaining.clone(),
            http_timeout: self.http_timeout.clone(),
            revoke_on_stop: self.revoke_on_stop.clone(),
            revoke_superseded_after: self.revoke_superseded_after.clone(),
            socket: self.socket.clone(),
            origins: self.origins,
        }
    }

    /// The single-target settings given, each named as it was: its flag, or its variable
    /// when the environment gave it.
    pub fn single_target_flags(&self) -> Vec<String> {
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        let set_path = |v: &Option<PathBuf>| v.as_ref().is_some_and(|p| !p.as_os_str().is_empty());
        [
            ("app_id", set(&self.app_id)),
            ("private_key_file", set_path(&self.private_key_file)),
            ("installation_id", set(&self.installation_id)),
            ("owner", set(&self.owner)),
            ("repo", set(&self.repo)),
            ("repositories", set(&self.repositories)),
            ("permissions", set(&self.permissions)),
            ("output", set_path(&self.output)),
            ("socket", set_path(&self.socket)),
            ("api_url", set(&self.api_url)),
            ("refresh_interval", set(&self.refresh_interval)),
            ("jitter", set(&self.jitter)),
            ("min_remaining", set(&self.min_remaining)),
            ("http_timeout", set(&self.http_timeout)),
            ("revoke_on_stop", set(&self.revoke_on_stop)),
            (
                "revoke_superseded_after",
                set(&self.revoke_superseded_after),
            ),
        ]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| self.spelling().of(name))
        .collect()
    }

    /// How a setting of these is named in an error: as [`Origins`] says it was given.
    pub fn spelling(&self) -> Spelling {
        Spelling::Flag(self.origins)
    }
}

#[cfg(test)]
impl ConfigArgs {
    /// Every field set, to see which ones `single_target_flags` reports.
    pub fn every_flag_set() -> Self {
        let s = || Some("x".to_owned());
        let p = || Some(PathBuf::from("/x"));
        ConfigArgs {
            app_id: s(),
            private_key_file: p(),
            installation_id: s(),
            owner: s(),
            repo: s(),
            repositories: s(),
            permissions: s(),
            output: p(),
            api_url: s(),
            refresh_interval: s(),
            jitter: s(),
            min_remaining: s(),
            http_timeout: s(),
            revoke_on_stop: s(),
            revoke_superseded_after: s(),
            socket: p(),
            metrics_file: p(),
            config: p(),
            origins: Origins::COMMAND_LINE,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The token file [default: $XDG_RUNTIME_DIR/github-token-refresher/token.json]; `--file`
    /// as in the consumer commands, `--output` as in `run`
    #[arg(
        long = "file",
        visible_alias = "output",
        env = "GITHUB_TOKEN_FILE",
        value_name = "PATH"
    )]
    pub output: Option<PathBuf>,
    /// Report on every target of this TOML file (as `run --config`)
    #[arg(long, env = "GITHUB_TOKEN_REFRESHER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Call a token expiring within this long "expiring" (exit 1)
    #[arg(long, env = "GITHUB_TOKEN_MIN_REMAINING", value_name = "DURATION", default_value = crate::durations::DEFAULT_MIN_REMAINING)]
    pub min_remaining: String,
    /// Print JSON instead of a sentence
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
