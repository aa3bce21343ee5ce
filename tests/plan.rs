//! `check --json`, `check --paths` and `check --env-file`, the machine-readable reports
//! setup.sh and other installers read instead of parsing TOML, the environment file or
//! `check`'s lines: each target's paths and every check's result, from the real binary
//! against the fake GitHub.

mod common;

use std::fs;

use common::*;
use serde_json::Value;

fn json_of(out: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {stdout}"))
}

/// `check --json` for `installation` with the standard flags: the run and its document.
fn check_json(env: &TestEnv, installation: &str) -> (std::process::Output, Value) {
    let mut c = env.cmd("check");
    c.args(["--installation-id", installation, "--json"]);
    let out = run(c);
    let doc = json_of(&out);
    (out, doc)
}

#[test]
fn check_json_reports_the_plan_and_every_step_of_a_single_target() {
    let env = TestEnv::new();
    let (out, doc) = check_json(&env, "100");
    assert_eq!(out.status.code(), Some(0), "{doc}");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["exit"], 0);
    let t = &doc["targets"][0];
    assert_eq!(t["output"], env.output.to_str().unwrap());
    assert_eq!(t["private_key_file"], env.key.to_str().unwrap());
    assert_eq!(t["mode"], "0600");
    assert_eq!(
        t["read_write"][0],
        env.output.parent().unwrap().to_str().unwrap()
    );
    assert_eq!(t["read_only"][0], env.key.to_str().unwrap());
    let checks = t["checks"].as_array().unwrap();
    assert!(checks.len() >= 6, "every step is reported: {doc}");
    assert!(checks.iter().all(|c| c["ok"] == true), "{doc}");
    // nothing but the document on stdout, and no token anywhere in it
    assert_clean(&doc.to_string(), &env.secrets(), &[]);
}

#[test]
fn check_json_names_the_failed_step_and_keeps_the_exit_status() {
    let env = TestEnv::new();
    let (out, doc) = check_json(&env, "999");
    assert_ne!(out.status.code(), Some(0), "{doc}");
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["exit"], out.status.code().unwrap());
    let checks = doc["targets"][0]["checks"].as_array().unwrap();
    let failed: Vec<&Value> = checks.iter().filter(|c| c["ok"] == false).collect();
    assert_eq!(failed.len(), 1, "{doc}");
    assert!(
        failed[0]["what"]
            .as_str()
            .unwrap()
            .contains("installation 999"),
        "{doc}"
    );
    assert!(!failed[0]["error"].as_str().unwrap().is_empty());
}

#[test]
fn check_json_reports_every_configuration_problem_with_status_78() {
    let out = run({
        let mut c = bare_cmd();
        c.args(["check", "--offline", "--json", "--app-id", "12a"]);
        c
    });
    let doc = json_of(&out);
    assert_eq!(out.status.code(), Some(78));
    assert_eq!(doc["exit"], 78);
    assert_eq!(doc["targets"], serde_json::json!([]));
    let problems = doc["problems"].as_array().unwrap();
    assert!(problems.len() >= 3, "{doc}");
    assert!(
        problems
            .iter()
            .any(|p| p["error"].as_str().unwrap().contains("--app-id '12a'"))
    );
}

#[test]
fn check_paths_lists_each_target_of_a_targets_file() {
    let env = TestEnv::new();
    let sock = env.dir.path().join("pull/octo.sock");
    let acme = env.dir.path().join("acme/token.json");
    let file = write_targets_toml(
        &env,
        &format!(
            "\n[[target]]\nname = \"acme\"\ninstallation_id = 100\noutput = \"{}\"\n\n\
             [[target]]\nname = \"octo\"\ninstallation_id = 200\nsocket = \"{}\"\n",
            acme.display(),
            sock.display()
        ),
    );
    let out = run({
        let mut c = bare_cmd();
        c.arg("check").arg("--paths").arg("--config").arg(&file);
        c.env("XDG_RUNTIME_DIR", env.dir.path());
        c
    });
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines: Vec<String> = String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let d = |p: &std::path::Path| p.display().to_string();
    let want = [
        format!("acme\toutput\t{}", d(&acme)),
        format!("acme\toutput-dir\t{}", d(acme.parent().unwrap())),
        format!("acme\tkey\t{}", d(&env.key)),
        format!("octo\tsocket\t{}", d(&sock)),
        format!("octo\tsocket-dir\t{}", d(sock.parent().unwrap())),
        format!("octo\tkey\t{}", d(&env.key)),
    ];
    for w in &want {
        assert!(lines.contains(w), "missing {w:?} in {lines:#?}");
    }
    // a socket-only target has no output line; the paths are only read, never created
    assert!(
        !lines.iter().any(|l| l.starts_with("octo\toutput")),
        "{lines:#?}"
    );
    assert!(!acme.parent().unwrap().exists());
    assert_eq!(env.fake.mint_count(), 0);
}

/// `check --env-file FILE` reads the unit's environment file as systemd does (comments,
/// quotes, a later line winning) and checks exactly those settings against the fake GitHub;
/// setup.sh asks it for the token file instead of parsing the file with sed.
#[test]
fn check_env_file_reads_the_units_settings_as_systemd_does() {
    let env = TestEnv::new();
    let env_file = env.dir.path().join("unit.env");
    fs::write(
        &env_file,
        format!(
            "# written by setup.sh\n; also a comment\nGITHUB_APP_ID={id}\n\
             GITHUB_APP_PRIVATE_KEY_FILE='{key}'\nGITHUB_APP_INSTALLATION_ID=999\n\
             GITHUB_APP_INSTALLATION_ID=\"100\"\nGITHUB_API_URL={url}\n\
             GITHUB_TOKEN_FILE=  {out}  \nnot a name=1\n",
            id = env.fake.app().id,
            key = env.key.display(),
            url = env.fake.url(),
            out = env.output.display(),
        ),
    )
    .unwrap();
    let check = |extra: &[&str]| {
        let mut c = bare_cmd();
        c.args(["check", "--env-file"]).arg(&env_file).args(extra);
        run(c)
    };

    let paths = check(&["--paths"]);
    assert_eq!(paths.status.code(), Some(0), "{}", text(&paths));
    let stdout = String::from_utf8_lossy(&paths.stdout);
    assert!(
        stdout.contains(&format!("default\toutput\t{}\n", env.output.display())),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&paths.stderr);
    assert!(
        stderr.contains("line 9: 'not a name' is not a variable name")
            && stderr.contains("systemd ignores this line"),
        "{stderr}"
    );

    // the last assignment wins: installation 100 exists, 999 would fail
    let full = check(&[]);
    assert_eq!(full.status.code(), Some(0), "{}", text(&full));
    assert_no_secrets(&text(&full), &env.secrets());

    let missing = {
        let mut c = bare_cmd();
        c.args(["check", "--offline", "--env-file=/nonexistent/env"]);
        run(c)
    };
    assert_eq!(missing.status.code(), Some(78), "{}", text(&missing));
    let line = text(&missing);
    assert!(
        line.contains("--env-file '/nonexistent/env'") && line.lines().count() == 1,
        "{line}"
    );
}
