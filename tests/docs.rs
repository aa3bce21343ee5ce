//! Shell completions and manual pages from the real binary: generated from the clap
//! definitions, they name every command, load in bash, and render as man pages without
//! warnings. The settings table of docs/configuration.md matches the one definition of
//! the settings (`config::settings`).

mod common;

use std::process::Command;

use common::*;

const SUBCOMMANDS: &[&str] = &[
    "run",
    "once",
    "status",
    "check",
    "revoke",
    "fingerprint",
    "git-credential",
    "token",
    "exec",
    "watch",
    "completions",
    "manpage",
];

fn stdout_of(args: &[&str]) -> String {
    let mut c = bare_cmd();
    c.args(args);
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn bash_completion_names_every_command_and_flag_and_loads() {
    let script = stdout_of(&["completions", "bash"]);
    for sub in SUBCOMMANDS {
        assert!(script.contains(sub), "{sub} missing");
    }
    for flag in [
        "--app-id",
        "--private-key-file",
        "--file",
        "--min-remaining",
    ] {
        assert!(script.contains(flag), "{flag} missing");
    }
    if have("bash") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("completion.bash");
        std::fs::write(&path, &script).unwrap();
        // load it and ask bash to complete `github-token-refresher sta`
        let probe = format!(
            "source '{}' && complete -p github-token-refresher && \
             COMP_WORDS=(github-token-refresher sta) COMP_CWORD=1 && \
             _github__token__refresher github-token-refresher sta github-token-refresher && \
             echo \"${{COMPREPLY[@]}}\"",
            path.display()
        );
        let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(said.lines().last() == Some("status"), "{said}");
    }
}

#[test]
fn zsh_and_fish_completions_are_for_this_command() {
    assert!(stdout_of(&["completions", "zsh"]).starts_with("#compdef github-token-refresher"));
    let fish = stdout_of(&["completions", "fish"]);
    assert!(
        fish.contains("complete -c github-token-refresher"),
        "{fish}"
    );
    // an unknown shell is a usage error
    let mut c = bare_cmd();
    c.args(["completions", "tcsh"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out).contains("possible values: bash"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_man_page_has_the_expected_sections_and_renders_cleanly() {
    let page = stdout_of(&["manpage"]);
    assert!(page.contains(".TH github-token-refresher 1"), "{page}");
    let sections: Vec<&str> = page.lines().filter(|l| l.starts_with(".SH ")).collect();
    assert_eq!(
        sections,
        [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH DESCRIPTION",
            ".SH OPTIONS",
            ".SH SUBCOMMANDS",
            ".SH \"EXIT STATUS\"",
            ".SH VERSION"
        ]
    );
    for sub in SUBCOMMANDS {
        assert!(
            page.contains(&format!(
                "github\\-token\\-refresher\\-{}(1)",
                sub.replace('-', "\\-")
            )),
            "{sub}"
        );
    }
    assert!(page.is_ascii(), "non-ASCII left unescaped");
    if have("groff") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("github-token-refresher.1");
        std::fs::write(&path, &page).unwrap();
        // -ww: every warning; -z: no output, just the parse
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "groff: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if have("man") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("github-token-refresher.1");
        std::fs::write(&path, &page).unwrap();
        let out = Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            shown.contains("EXIT STATUS") && shown.contains("78"),
            "{shown}"
        );
    }
}

#[test]
fn manpage_dir_writes_a_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    stdout_of(&["manpage", "--dir", path]);
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert_eq!(pages.len(), SUBCOMMANDS.len() + 1, "{pages:?}");
    for sub in SUBCOMMANDS {
        let page =
            std::fs::read_to_string(dir.path().join(format!("github-token-refresher-{sub}.1")))
                .unwrap_or_else(|e| panic!("{sub}: {e}"));
        assert!(
            page.contains(".SH OPTIONS") || page.contains(".SH SYNOPSIS"),
            "{sub}"
        );
    }
    let run_page =
        std::fs::read_to_string(dir.path().join("github-token-refresher-run.1")).unwrap();
    assert!(
        run_page.contains("GITHUB_APP_ID"),
        "the flags' variables are documented"
    );

    // a directory that is not there: exit 1, naming the flag
    let mut c = bare_cmd();
    c.args(["manpage", "--dir"]).arg(dir.path().join("missing"));
    let out = run(c);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("manpage --dir"), "{}", text(&out));
}

/// docs/configuration.md's reference table: one row per setting, spelled as the table in
/// `config::settings` spells it (flag, variable, TOML key and where the file may set it),
/// and no TOML key the program does not know.
#[test]
fn the_docs_settings_table_is_the_programs() {
    use github_token_refresher::config::settings::{InFile, SETTINGS};
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    let rows: Vec<Vec<&str>> = doc
        .lines()
        .skip_while(|l| !l.starts_with("| flag | environment | TOML key |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect();
    assert!(rows.len() >= SETTINGS.len(), "{rows:?}");
    let code = |s: Option<&str>, rest: &str| s.map_or("—".to_owned(), |s| format!("`{s}{rest}"));
    for s in SETTINGS {
        let toml = match s.in_file {
            InFile::No => "—".to_owned(),
            InFile::File => "(file)".to_owned(),
            InFile::Target => "(target)".to_owned(),
            InFile::FileAndTarget => "(file, target)".to_owned(),
        };
        let found = rows.iter().any(|r| {
            let flag_ok = match s.flag {
                Some(f) => r[0] == format!("`--{f}`") || r[0].starts_with(&format!("`--{f} ")),
                None => r[0] == "—",
            };
            let key_ok = match s.in_file {
                InFile::No => r[2] == "—",
                _ => r[2].starts_with(&format!("`{}", s.name)) && r[2].ends_with(&toml),
            };
            flag_ok && r[1] == code(s.env, "`") && key_ok
        });
        assert!(found, "docs/configuration.md has no row for {s:?}");
    }
    for r in rows.iter().filter(|r| r[2] != "—") {
        let key = r[2].trim_start_matches('`');
        let key = &key[..key
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(key.len())];
        assert!(
            SETTINGS.iter().any(|s| s.name == key),
            "docs/configuration.md documents TOML key {key}, which no setting has"
        );
    }
}
