//! Shell completions and manual pages from the real binary: generated from the clap
//! definitions, they name every command, load in bash, and render as man pages without
//! warnings.

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
