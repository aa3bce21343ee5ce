//! Every configuration mistake a user can make gets exit status 78 and one clear line that
//! names the flag or file and says what to do, from both `once` and `run`, before anything
//! is sent to GitHub. Keys of the wrong kind are made with `openssl` when it is installed
//! (otherwise PEM files with the same headers stand in for them).

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// The flags of a working `once`/`run`, by name; a case changes or removes some.
fn good_flags(env: &TestEnv) -> BTreeMap<&'static str, OsString> {
    BTreeMap::from([
        ("--app-id", "1234".into()),
        ("--private-key-file", env.key.clone().into()),
        ("--installation-id", "100".into()),
        ("--output", env.output.clone().into()),
        ("--api-url", env.fake.url().into()),
    ])
}

struct Case {
    what: String,
    /// (flag, Some(value)) sets, (flag, None) removes.
    flags: Vec<(&'static str, Option<OsString>)>,
    env: Vec<(&'static str, String)>,
    /// Every fragment must be in the one line.
    expect: Vec<String>,
}

fn case(what: &str, flags: &[(&'static str, Option<&str>)], expect: &[&str]) -> Case {
    Case {
        what: what.into(),
        flags: flags
            .iter()
            .map(|(f, v)| (*f, v.map(OsString::from)))
            .collect(),
        env: Vec::new(),
        expect: expect.iter().map(|s| s.to_string()).collect(),
    }
}

fn key_case(what: &str, path: &Path, expect: &[&str]) -> Case {
    let mut c = case(what, &[], expect);
    c.flags
        .push(("--private-key-file", Some(path.as_os_str().to_owned())));
    c.expect.push(format!("'{}'", path.display()));
    c
}

/// Run `sub` with the case's flags; returns (exit code, stdout+stderr).
fn attempt(env: &TestEnv, sub: &str, c: &Case) -> (Option<i32>, String) {
    let mut flags = good_flags(env);
    for (f, v) in &c.flags {
        match v {
            Some(v) => {
                flags.insert(f, v.clone());
            }
            None => {
                flags.remove(f);
            }
        }
    }
    let mut cmd = bare_cmd();
    cmd.arg(sub)
        .env("RUST_LOG", "trace")
        .env_remove("XDG_RUNTIME_DIR");
    for (f, v) in flags {
        cmd.arg(f).arg(v);
    }
    for (k, v) in &c.env {
        cmd.env(k, v);
    }
    Proc::spawn(cmd).finish(Duration::from_secs(20))
}

fn check_case(env: &TestEnv, c: &Case, keys: &[&str]) {
    let sent = env.fake.requests().len();
    for sub in ["once", "run"] {
        let (code, out) = attempt(env, sub, c);
        assert_eq!(code, Some(78), "{sub}, {}: {out}", c.what);
        // once: the line itself; run: one ERROR log line (and nothing else at WARN or above)
        let lines: Vec<&str> = match sub {
            "once" => out.lines().filter(|l| !l.trim().is_empty()).collect(),
            _ => out
                .lines()
                .filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))
                .collect(),
        };
        assert_eq!(lines.len(), 1, "{sub}, {}: one line, got:\n{out}", c.what);
        for e in &c.expect {
            assert!(
                lines[0].contains(e.as_str()),
                "{sub}, {}: {e:?} missing in {:?}",
                c.what,
                lines[0]
            );
        }
        assert_clean(&out, &env.secrets(), keys);
    }
    assert_eq!(
        env.fake.requests().len(),
        sent,
        "{}: nothing sent to GitHub",
        c.what
    );
}

fn openssl(args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A key file made by `openssl args… -out PATH`, or `fallback` when openssl is missing.
fn make_key(dir: &Path, name: &str, args: &[&str], fallback: &str) -> PathBuf {
    let path = dir.join(name);
    let mut full: Vec<&str> = args.to_vec();
    let p = path.to_str().unwrap().to_owned();
    full.extend(["-out", &p]);
    if !openssl(&full) {
        eprintln!("{name}: openssl unavailable, using a stand-in PEM");
        fs::write(&path, fallback).unwrap();
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn every_key_mistake_exits_78_with_one_line_naming_the_file_and_the_fix() {
    let env = TestEnv::new();
    let d = env.dir.path();
    let good = env.key.to_str().unwrap().to_owned();
    let pem = |label: &str| format!("-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n");

    let missing = d.join("nope.pem");
    let empty = d.join("empty.pem");
    write_key(&empty, "");
    let garbage = d.join("garbage.pem");
    write_key(&garbage, "this is not a key\n");
    let public = d.join("public.pem");
    write_key(&public, &env.fake.app().key.public_pem);
    let loose = d.join("loose.pem");
    write_key(&loose, &env.fake.app().key.pkcs1_pem);
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o644)).unwrap();
    let dir_key = d.join("a-directory.pem");
    fs::create_dir(&dir_key).unwrap();
    let enc8 = make_key(
        d,
        "encrypted-pkcs8.pem",
        &["pkey", "-in", &good, "-aes256", "-passout", "pass:secret"],
        &pem("ENCRYPTED PRIVATE KEY"),
    );
    let enc1 = make_key(
        d,
        "encrypted-pkcs1.pem",
        &[
            "rsa",
            "-in",
            &good,
            "-aes256",
            "-passout",
            "pass:secret",
            "-traditional",
        ],
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
    );
    let ec = make_key(
        d,
        "ec.pem",
        &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
        &pem("EC PRIVATE KEY"),
    );
    let ed = make_key(
        d,
        "ed25519.pem",
        &["genpkey", "-algorithm", "ed25519"],
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ2PQ8QYWQfvP1Qc3w1kO2RCVnZC3b3hVZ8M7m0nWq7D\n-----END PRIVATE KEY-----\n",
    );
    let small = make_key(
        d,
        "rsa1024.pem",
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
        ],
        &pem("RSA PRIVATE KEY"),
    );
    let openssh = d.join("id_rsa");
    write_key(&openssh, &pem("OPENSSH PRIVATE KEY"));

    let cases = [
        key_case(
            "missing key",
            &missing,
            &["does not exist", "--private-key-file", "Generate"],
        ),
        key_case("empty key", &empty, &["is empty", "download a new .pem"]),
        key_case(
            "garbage key",
            &garbage,
            &["does not hold an RSA private key", "BEGIN RSA PRIVATE KEY"],
        ),
        key_case(
            "public key",
            &public,
            &["holds a public key", "private key is needed"],
        ),
        key_case(
            "group-readable key",
            &loose,
            &["mode 0644", &format!("chmod 600 '{}'", loose.display())],
        ),
        key_case("a directory", &dir_key, &["is not a regular file"]),
        key_case(
            "encrypted PKCS#8 key",
            &enc8,
            &["is encrypted", "openssl pkey"],
        ),
        key_case(
            "encrypted PKCS#1 key",
            &enc1,
            &["is encrypted", "openssl pkey"],
        ),
        key_case("EC key", &ec, &["is not an RSA key", "App's settings page"]),
        key_case(
            "Ed25519 key (PKCS#8)",
            &ed,
            &["not an RSA key", "App's settings page"],
        ),
        key_case("RSA 1024", &small, &["cannot sign RS256", "2048 bits"]),
        key_case("OpenSSH key", &openssh, &["is not an RSA key"]),
        case(
            "no key given",
            &[("--private-key-file", None)],
            &[
                "--private-key-file is missing",
                "GITHUB_APP_PRIVATE_KEY_FILE",
            ],
        ),
    ];
    let keys = [
        env.fake.app().key.pkcs1_pem.as_str(),
        env.fake.app().key.pkcs8_pem.as_str(),
    ];
    for c in &cases {
        check_case(&env, c, &keys);
    }
    let generated: Vec<String> = [&enc8, &enc1, &ec, &ed, &small]
        .iter()
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    // none of those keys' lines reached the output either
    for c in &cases {
        let (_, out) = attempt(&env, "once", c);
        let refs: Vec<&str> = generated.iter().map(String::as_str).collect();
        assert_clean(&out, &[], &refs);
    }
}

#[test]
fn every_flag_mistake_exits_78_with_one_line_naming_the_flag_and_the_fix() {
    let env = TestEnv::new();
    let cases = vec![
        case(
            "no App ID",
            &[("--app-id", None)],
            &[
                "--app-id is missing",
                "GITHUB_APP_ID",
                "App's settings page",
            ],
        ),
        case(
            "App ID typo",
            &[("--app-id", Some("12a4"))],
            &["--app-id '12a4'", "digits", "Client ID"],
        ),
        case(
            "no installation",
            &[("--installation-id", None)],
            &[
                "no installation given",
                "--installation-id N",
                "--owner NAME",
                "--repo OWNER/NAME",
            ],
        ),
        case(
            "--owner and --repo",
            &[
                ("--installation-id", None),
                ("--owner", Some("acme")),
                ("--repo", Some("acme/widgets")),
            ],
            &["--owner", "--repo", "give only one of them"],
        ),
        case(
            "--installation-id and --owner",
            &[("--owner", Some("acme"))],
            &["--installation-id", "give only one of them"],
        ),
        case(
            "installation id not a number",
            &[("--installation-id", Some("abc"))],
            &["--installation-id 'abc'", "expected a number"],
        ),
        case(
            "--repo without owner",
            &[("--installation-id", None), ("--repo", Some("widgets"))],
            &["--repo 'widgets'", "OWNER/NAME"],
        ),
        case(
            "bad owner name",
            &[("--installation-id", None), ("--owner", Some("ac me"))],
            &["--owner 'ac me'", "not a GitHub account"],
        ),
        case(
            "duration without unit",
            &[("--refresh-interval", Some("45"))],
            &["--refresh-interval '45'", "unit is required", "45m"],
        ),
        case(
            "unknown unit",
            &[("--jitter", Some("5x"))],
            &["--jitter '5x'", "90s, 45m or 1h"],
        ),
        case(
            "interval too long",
            &[("--refresh-interval", Some("2h"))],
            &["--refresh-interval 2h", "at most 55m"],
        ),
        case(
            "jitter not shorter than interval",
            &[
                ("--refresh-interval", Some("10m")),
                ("--jitter", Some("10m")),
            ],
            &["--jitter 10m", "shorter than --refresh-interval"],
        ),
        case(
            "min-remaining an hour",
            &[("--min-remaining", Some("1h"))],
            &["--min-remaining", "less than 1h"],
        ),
        case(
            "http timeout zero",
            &[("--http-timeout", Some("0s"))],
            &["--http-timeout", "at least 1s"],
        ),
        case(
            "permission without level",
            &[("--permissions", Some("contents"))],
            &["--permissions 'contents'", "NAME=LEVEL", "contents=read"],
        ),
        case(
            "unknown level",
            &[("--permissions", Some("contents=rw"))],
            &["--permissions", "'rw'", "read, write or admin"],
        ),
        case(
            "permission name in capitals",
            &[("--permissions", Some("Contents=read"))],
            &["--permissions", "'Contents'", "pull_requests"],
        ),
        case(
            "repository of another owner",
            &[
                ("--installation-id", None),
                ("--owner", Some("acme")),
                ("--repositories", Some("other/widgets")),
            ],
            &["--repositories 'other/widgets'", "without the owner"],
        ),
        case(
            "plain http to a remote host",
            &[("--api-url", Some("http://ghe.example.com/api/v3"))],
            &[
                "--api-url 'http://ghe.example.com/api/v3'",
                "loopback",
                "use https://",
            ],
        ),
        case(
            "not a URL",
            &[("--api-url", Some("api.github.com"))],
            &[
                "--api-url 'api.github.com'",
                "not a URL",
                "https://api.github.com",
            ],
        ),
        case(
            "another scheme",
            &[("--api-url", Some("ftp://ghe.example.com"))],
            &["--api-url", "expected an https:// URL"],
        ),
        case(
            "output names a directory",
            &[("--output", Some("/tmp/tokens/"))],
            &["--output '/tmp/tokens/'", "name a file"],
        ),
        case(
            "no output and no XDG_RUNTIME_DIR",
            &[("--output", None)],
            &["--output is not set", "XDG_RUNTIME_DIR", "--output PATH"],
        ),
        case(
            "output under a regular file",
            &[("--output", Some("/etc/passwd/tokens/token.json"))],
            &[
                "--output '/etc/passwd/tokens/token.json'",
                "cannot create directory '/etc/passwd/tokens'",
                "Not a directory",
                "choose another --output",
            ],
        ),
        Case {
            env: vec![("GITHUB_TOKEN_REFRESH_INTERVAL", "45".into())],
            ..case(
                "a mistake in the environment",
                &[],
                &["GITHUB_TOKEN_REFRESH_INTERVAL='45'", "unit is required"],
            )
        },
    ];
    let keys = [env.fake.app().key.pkcs1_pem.as_str()];
    for c in &cases {
        check_case(&env, c, &keys);
    }
}

/// The systemd unit passes every setting through its `EnvironmentFile=`: a bad value given
/// there is named by its variable, as the user wrote it in that file, and the same value on
/// the command line by its flag.
#[test]
fn a_bad_value_is_named_by_its_variable_or_its_flag_as_it_was_given() {
    let env = TestEnv::new();
    let by_env = Case {
        env: vec![("GITHUB_APP_ID", "abc".into())],
        ..case(
            "App ID by environment",
            &[("--app-id", None)],
            &["GITHUB_APP_ID='abc': expected the App ID"],
        )
    };
    let by_flag = case(
        "App ID by flag",
        &[("--app-id", Some("abc"))],
        &["--app-id 'abc': expected the App ID"],
    );
    let output = Case {
        env: vec![("GITHUB_TOKEN_FILE", "/etc/passwd/tokens/token.json".into())],
        ..case(
            "unusable output by environment",
            &[("--output", None)],
            &["GITHUB_TOKEN_FILE='/etc/passwd/tokens/token.json': cannot create directory"],
        )
    };
    let keys = [env.fake.app().key.pkcs1_pem.as_str()];
    for (c, not) in [
        (&by_env, "--app-id"),
        (&by_flag, "GITHUB_APP_ID"),
        // (token_file's own hint, "choose another --output", is not the setting's name)
        (&output, "--output '"),
    ] {
        check_case(&env, c, &keys);
        let (_, out) = attempt(&env, "once", c);
        assert!(!out.contains(not), "{}: {not} in {out:?}", c.what);
    }
    // a targets file refuses the single-target settings, named as they were given
    let mut c = bare_cmd();
    c.args([
        "once",
        "--config",
        "/nonexistent/targets.toml",
        "--jitter",
        "1m",
    ])
    .env("GITHUB_APP_ID", "1234");
    let (code, out) = Proc::spawn(c).finish(Duration::from_secs(20));
    assert_eq!(code, Some(78), "{out}");
    assert!(
        out.contains(
            "--config '/nonexistent/targets.toml' and GITHUB_APP_ID, --jitter can't be combined"
        ),
        "{out}"
    );
}

#[test]
fn an_output_on_a_read_only_file_system_exits_78() {
    let env = TestEnv::new();
    let ro = env.dir.path().join("ro");
    fs::create_dir(&ro).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k,ro,mode=0700", "tmpfs"])
        .arg(&ro)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: cannot mount a read-only tmpfs here (needs root)");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&ro);
    let keys = [env.fake.app().key.pkcs1_pem.as_str()];
    let in_dir = ro.join("token.json");
    let below = ro.join("sub").join("token.json");
    for (path, why) in [
        (&in_dir, "cannot create files in".to_string()),
        (
            &below,
            format!(
                "cannot create directory '{}'",
                below.parent().unwrap().display()
            ),
        ),
    ] {
        let c = Case {
            what: format!("read-only {}", path.display()),
            flags: vec![("--output", Some(path.clone().into()))],
            env: vec![],
            expect: vec![
                format!("--output '{}'", path.display()),
                why,
                "Read-only file system".into(),
            ],
        };
        check_case(&env, &c, &keys);
    }
}

#[test]
fn an_app_id_of_another_app_is_refused_by_github_with_the_hint_and_78() {
    let env = TestEnv::new();
    let c = case("App ID of another App", &[("--app-id", Some("4321"))], &[]);
    let (code, out) = attempt(&env, "once", &c);
    assert_eq!(code, Some(78), "{out}");
    // the error and its hint (between trace log lines)
    let lines: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("github-token-refresher: "))
        .take(2)
        .collect();
    assert_eq!(lines.len(), 2, "the error and its hint: {out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("github-token-refresher: "))
            .count(),
        1,
        "{out}"
    );
    assert!(
        lines[0].contains("401") && lines[0].contains("could not be decoded"),
        "{out}"
    );
    assert!(
        lines[1].contains("hint:") && lines[1].contains("--app-id"),
        "{out}"
    );
    assert_eq!(env.fake.requests().len(), 1, "once does not retry it");
    // run: no token to serve, so it exits 78 too, with the same hint in the journal
    let (code, out) = attempt(&env, "run", &c);
    assert_eq!(code, Some(78), "{out}");
    assert!(out.contains("check that --app-id matches the App"), "{out}");
    assert_clean(
        &out,
        &env.secrets(),
        &[env.fake.app().key.pkcs1_pem.as_str()],
    );
}

#[test]
fn configuration_file_and_command_line_syntax_mistakes_exit_78() {
    let env = TestEnv::new();
    let cfg = env.dir.path().join("targets.toml");
    let write = |body: &str| {
        write_targets_toml(&env, body);
    };
    let target = format!(
        "[[target]]\nname = \"a\"\ninstallation_id = 100\noutput = \"{}\"\n",
        env.output.display()
    );
    let run_cfg = |sub: &str, extra: &[&str]| {
        let mut c = bare_cmd();
        c.arg(sub).arg("--config").arg(&cfg).args(extra);
        Proc::spawn(c).finish(Duration::from_secs(20))
    };
    let shown = cfg.display().to_string();
    for (what, body, extra, expect) in [
        (
            "no targets",
            String::new(),
            vec![],
            vec![shown.clone(), "no [[target]]".into()],
        ),
        (
            "unknown key",
            format!("{target}bogus = 1\n"),
            vec![],
            vec![format!("{shown}:8:"), "bogus".into()],
        ),
        (
            "TOML syntax",
            format!("{target}jitter = \n"),
            vec![],
            vec![format!("{shown}:8:")],
        ),
        (
            "bad duration in the file",
            format!("{target}refresh_interval = \"45\"\n"),
            vec![],
            // (the line names the key as "refresh-interval", the flag's spelling)
            vec![
                format!("{shown}:8:"),
                "'45'".into(),
                "unit is required".into(),
            ],
        ),
        (
            "file and flags",
            target.clone(),
            vec!["--app-id", "1234"],
            vec!["can't be combined".into(), "--app-id".into()],
        ),
    ] {
        write(&body);
        for sub in ["once", "run"] {
            let (code, out) = run_cfg(sub, &extra);
            assert_eq!(code, Some(78), "{what}, {sub}: {out}");
            let errors: Vec<&str> = out
                .lines()
                .filter(|l| !l.trim().is_empty())
                .filter(|l| sub == "once" || l.contains(" ERROR "))
                .collect();
            assert_eq!(errors.len(), 1, "{what}, {sub}: {out}");
            for e in &expect {
                assert!(
                    errors[0].contains(e.as_str()),
                    "{what}, {sub}: {e:?} in {out}"
                );
            }
        }
    }
    fs::remove_file(&cfg).unwrap();
    let (code, out) = run_cfg("once", &[]);
    assert_eq!(code, Some(78));
    assert!(
        out.contains(&format!("cannot read configuration file '{shown}'")),
        "{out}"
    );

    // clap: an unknown flag or a missing value is 78 too, the first line naming it
    for (args, expect) in [
        (vec!["once", "--no-such-flag"], "--no-such-flag"),
        (vec!["run", "--app-id"], "--app-id"),
        (vec!["once", "--refresh-interval"], "--refresh-interval"),
    ] {
        let mut c = bare_cmd();
        c.args(&args);
        let o = run(c);
        assert_eq!(o.status.code(), Some(78), "{args:?}");
        let first = text(&o).lines().next().unwrap_or_default().to_owned();
        assert!(
            first.starts_with("error:") && first.contains(expect),
            "{args:?}: {first}"
        );
    }
    assert_eq!(env.fake.requests().len(), 0, "nothing sent to GitHub");
}
