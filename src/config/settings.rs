//! The one definition of every host-side setting: its name, command-line flag, environment
//! variable, TOML key, where the TOML file may set it, default and a short help. The clap
//! arguments (`cli::ConfigArgs`), the TOML structs (`config::file`), the unit's
//! `UnsetEnvironment=` list (systemd/config-file.conf) and the reference table in
//! docs/configuration.md are checked against it by tests, so adding a setting starts here and
//! a forgotten spelling fails a test instead of confusing a user.

use super::{
    DEFAULT_API_URL, DEFAULT_HTTP_TIMEOUT, DEFAULT_JITTER, DEFAULT_MIN_REMAINING,
    DEFAULT_REFRESH_INTERVAL,
};

/// Where a TOML configuration file may set a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFile {
    /// Not in the file (a flag or variable only).
    No,
    /// At the top of the file only (applies to every target).
    File,
    /// In a `[[target]]` table only.
    Target,
    /// At the top as a default, and in a target to override it.
    FileAndTarget,
}

impl InFile {
    /// At the top of the file.
    pub fn top(self) -> bool {
        matches!(self, InFile::File | InFile::FileAndTarget)
    }

    /// In a `[[target]]` table.
    pub fn target(self) -> bool {
        matches!(self, InFile::Target | InFile::FileAndTarget)
    }
}

/// One setting, spelled every way a user can write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The TOML key, and the name the code uses.
    pub name: &'static str,
    /// The long flag without `--`, if the command line has one.
    pub flag: Option<&'static str>,
    /// The environment variable the flag also reads.
    pub env: Option<&'static str>,
    pub in_file: InFile,
    /// May be given together with `--config FILE` (the others describe the one target of
    /// the flags path, and `run` refuses a mix).
    pub with_config: bool,
    /// The default as shown to the user, when it is one fixed value.
    pub default: Option<&'static str>,
    pub help: &'static str,
}

const fn setting(name: &'static str, flag: &'static str, env: &'static str) -> Setting {
    Setting {
        name,
        flag: Some(flag),
        env: Some(env),
        in_file: InFile::FileAndTarget,
        with_config: false,
        default: None,
        help: "",
    }
}

const fn file_only(name: &'static str, in_file: InFile, help: &'static str) -> Setting {
    Setting {
        name,
        flag: None,
        env: None,
        in_file,
        with_config: false,
        default: None,
        help,
    }
}

impl Setting {
    const fn in_file(self, in_file: InFile) -> Self {
        Setting { in_file, ..self }
    }
    const fn default(self, default: &'static str) -> Self {
        Setting {
            default: Some(default),
            ..self
        }
    }
    const fn help(self, help: &'static str) -> Self {
        Setting { help, ..self }
    }
    const fn with_config(self) -> Self {
        Setting {
            with_config: true,
            ..self
        }
    }

    /// The flag as typed, `--app-id`.
    pub fn long(&self) -> Option<String> {
        self.flag.map(|f| format!("--{f}"))
    }
}

/// Every host-side setting (the consumer commands inside the container have their own few
/// flags, documented with them).
pub const SETTINGS: &[Setting] = &[
    setting("app_id", "app-id", "GITHUB_APP_ID")
        .help("App ID (digits) or Client ID (Iv…), used as the JWT issuer"),
    setting(
        "private_key_file",
        "private-key-file",
        "GITHUB_APP_PRIVATE_KEY_FILE",
    )
    .help("the App's private key, PEM (PKCS#1 or PKCS#8), mode 0600"),
    setting(
        "installation_id",
        "installation-id",
        "GITHUB_APP_INSTALLATION_ID",
    )
    .in_file(InFile::Target)
    .help("installation ID"),
    setting("owner", "owner", "GITHUB_APP_OWNER")
        .in_file(InFile::Target)
        .help("find the installation on this organization or user"),
    setting("repo", "repo", "GITHUB_APP_REPO")
        .in_file(InFile::Target)
        .help("find the installation on this repository"),
    setting("repositories", "repositories", "GITHUB_TOKEN_REPOSITORIES")
        .in_file(InFile::Target)
        .help("restrict the token to these repositories"),
    setting("permissions", "permissions", "GITHUB_TOKEN_PERMISSIONS")
        .in_file(InFile::Target)
        .help("restrict the token's permissions"),
    setting("output", "output", "GITHUB_TOKEN_FILE")
        .in_file(InFile::Target)
        .help("the token file"),
    setting("socket", "socket", "GITHUB_TOKEN_SOCKET")
        .in_file(InFile::Target)
        .help("pull mode: serve tokens on this Unix socket"),
    setting("api_url", "api-url", "GITHUB_API_URL")
        .default(DEFAULT_API_URL)
        .help("REST API base URL"),
    setting(
        "refresh_interval",
        "refresh-interval",
        "GITHUB_TOKEN_REFRESH_INTERVAL",
    )
    .default(DEFAULT_REFRESH_INTERVAL)
    .help("time between refreshes"),
    setting("jitter", "jitter", "GITHUB_TOKEN_REFRESH_JITTER")
        .default(DEFAULT_JITTER)
        .help("random ± spread around the interval"),
    setting(
        "min_remaining",
        "min-remaining",
        "GITHUB_TOKEN_MIN_REMAINING",
    )
    .default(DEFAULT_MIN_REMAINING)
    .help("refresh no later than this long before the token expires"),
    setting("http_timeout", "http-timeout", "GITHUB_HTTP_TIMEOUT")
        .in_file(InFile::File)
        .default(DEFAULT_HTTP_TIMEOUT)
        .help("give up on one HTTP request after this long"),
    setting(
        "revoke_on_stop",
        "revoke-on-stop",
        "GITHUB_TOKEN_REVOKE_ON_STOP",
    )
    .default("false")
    .help("revoke the token and remove the file when the daemon stops"),
    setting(
        "revoke_superseded_after",
        "revoke-superseded-after",
        "GITHUB_TOKEN_REVOKE_SUPERSEDED_AFTER",
    )
    .help("revoke the previous token this long after its successor was published"),
    setting("metrics_file", "metrics-file", "GITHUB_TOKEN_METRICS_FILE")
        .in_file(InFile::File)
        .with_config()
        .help("run: write Prometheus metrics to this file"),
    setting("config", "config", "GITHUB_TOKEN_REFRESHER_CONFIG")
        .in_file(InFile::No)
        .with_config()
        .help("many targets from a TOML file instead of the single-target flags"),
    file_only("name", InFile::Target, "the target's name"),
    file_only(
        "mode",
        InFile::FileAndTarget,
        "token file mode, e.g. \"0640\"",
    )
    .default("0600"),
    file_only(
        "group",
        InFile::FileAndTarget,
        "token file group (name or gid)",
    ),
    file_only(
        "delete_removed_outputs",
        InFile::File,
        "on reload, delete the token files of targets removed from the file",
    )
    .default("false"),
];

/// The top-level key that holds the `[[target]]` tables (not a setting itself).
pub const TARGET_TABLE: &str = "target";

/// The flags of the one-target path, which `--config` refuses next to it.
pub fn single_target_flags() -> impl Iterator<Item = String> {
    SETTINGS
        .iter()
        .filter(|s| !s.with_config)
        .filter_map(Setting::long)
}

/// The variables a service that runs `--config` must not inherit: every variable of a
/// setting the file can say (the unit's `UnsetEnvironment=`).
pub fn variables_the_file_replaces() -> impl Iterator<Item = &'static str> {
    SETTINGS
        .iter()
        .filter(|s| s.in_file != InFile::No)
        .filter_map(|s| s.env)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use clap::CommandFactory;

    use super::*;

    #[test]
    fn names_flags_and_variables_are_unique() {
        for key in [
            |s: &Setting| Some(s.name),
            |s: &Setting| s.flag,
            |s: &Setting| s.env,
        ] {
            let all: Vec<_> = SETTINGS.iter().filter_map(key).collect();
            let unique: BTreeSet<_> = all.iter().collect();
            assert_eq!(all.len(), unique.len(), "{all:?}");
        }
        for s in SETTINGS {
            assert_eq!(s.flag.is_some(), s.env.is_some(), "{}", s.name);
            if let Some(flag) = s.flag {
                assert_eq!(flag.replace('-', "_"), s.name, "flag of {}", s.name);
            }
        }
    }

    /// The `run` command's flags (with their variables) are exactly the table's, and each
    /// help shows the table's default.
    #[test]
    fn clap_arguments_match_the_table() {
        let cli = crate::cli::Cli::command();
        for command in ["run", "once", "check"] {
            let sub = cli.find_subcommand(command).expect(command);
            let have: BTreeSet<(String, Option<String>)> = sub
                .get_arguments()
                .filter_map(|a| {
                    let long = a.get_long()?;
                    let env = a.get_env().map(|e| e.to_string_lossy().into_owned());
                    Some((long.to_owned(), env))
                })
                // check's own report flags, and where it reads the environment from, are
                // not settings
                .filter(|(long, _)| {
                    !matches!(
                        long.as_str(),
                        "help" | "offline" | "json" | "paths" | "env-file"
                    )
                })
                .collect();
            let want: BTreeSet<(String, Option<String>)> = SETTINGS
                .iter()
                .filter_map(|s| Some((s.flag?.to_owned(), s.env.map(str::to_owned))))
                .collect();
            assert_eq!(have, want, "{command}");
            for s in SETTINGS.iter().filter(|s| s.flag.is_some()) {
                let arg = sub
                    .get_arguments()
                    .find(|a| a.get_long() == s.flag)
                    .expect("checked above");
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                if let Some(default) = s.default {
                    assert!(help.contains(&format!("[default: {default}]")), "{help}");
                }
            }
        }
    }

    #[test]
    fn the_refused_flags_are_the_tables() {
        let args = crate::cli::ConfigArgs::every_flag_set();
        let have: BTreeSet<String> = args.single_target_flags().into_iter().collect();
        let want: BTreeSet<String> = single_target_flags().collect();
        assert_eq!(have, want);
    }

    /// systemd/config-file.conf unsets exactly the variables of the settings a file says.
    #[test]
    fn the_units_unset_environment_is_the_tables() {
        let conf = include_str!("../../systemd/config-file.conf");
        let have: BTreeSet<&str> = conf
            .lines()
            .filter_map(|l| l.strip_prefix("UnsetEnvironment="))
            .flat_map(str::split_whitespace)
            .collect();
        let want: BTreeSet<&str> = variables_the_file_replaces().collect();
        assert_eq!(have, want);
        assert!(!have.contains("GITHUB_TOKEN_REFRESHER_CONFIG"));
    }
}
