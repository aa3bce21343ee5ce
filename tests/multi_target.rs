//! Many targets from one configuration file: one daemon, independent schedules, one JWT.

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use github_token_refresher::token_file;
use rustix::process::Signal;

/// [`write_targets_toml`] with the settings `extra`, then `targets`.
fn write_config(env: &TestEnv, targets: &str, extra: &str) -> PathBuf {
    write_targets_toml(env, &format!("{extra}\n{targets}"))
}

fn out(env: &TestEnv, name: &str) -> PathBuf {
    env.dir.path().join("tokens").join(name).join("token.json")
}

fn target(env: &TestEnv, name: &str, how: &str) -> String {
    format!(
        "[[target]]\nname = \"{name}\"\n{how}\noutput = \"{}\"\n",
        out(env, name).display()
    )
}

#[test]
fn three_targets_one_daemon_one_jwt() {
    let env = TestEnv::new();
    let targets = [
        target(&env, "widgets", "installation_id = 100\nrepositories = [\"widgets\"]\npermissions = { contents = \"read\" }"),
        target(&env, "octocat", "owner = \"octocat\""),
        target(&env, "gadgets", "repo = \"acme/gadgets\"\nrepositories = [\"gadgets\"]"),
    ]
    .concat();
    let config = write_config(&env, &targets, "refresh_interval = \"30m\"");
    let (_n, d, ready) = daemon_config_ready(&env, &config);
    assert!(ready.contains("STATUS=3 targets: 3 fresh"), "{ready}");
    let w = token_file::read(&out(&env, "widgets")).unwrap();
    assert_eq!(w.repositories, Some(vec!["widgets".to_string()]));
    assert_eq!(
        w.permissions.get("contents").map(String::as_str),
        Some("read")
    );
    assert_eq!(
        token_file::read(&out(&env, "octocat"))
            .unwrap()
            .installation_id,
        200
    );
    assert_eq!(
        token_file::read(&out(&env, "gadgets"))
            .unwrap()
            .installation_id,
        100
    );
    // one App JWT served every App request
    let jwts: HashSet<String> = env
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/app") || r.path.ends_with("/installation"))
        .filter_map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    assert_eq!(jwts.len(), 1, "one JWT reused across targets");
    let (_, log) = d.finish(Duration::from_millis(100));
    for name in ["widgets", "octocat", "gadgets"] {
        assert!(
            log.contains(&format!("target_name={name}")),
            "journal lines carry the target: {log}"
        );
    }
    assert_no_secrets(&log, &env.secrets());
}

#[test]
fn a_failing_target_does_not_hold_up_the_others() {
    let env = TestEnv::new();
    let targets = [
        target(&env, "good", "installation_id = 100"),
        target(&env, "gone", "installation_id = 4242"),
        target(&env, "user", "owner = \"octocat\""),
    ]
    .concat();
    let config = write_config(&env, &targets, "");
    let (_n, d, ready) = daemon_config_ready(&env, &config);
    assert!(
        ready.contains("3 targets: 2 fresh, 1 failing (gone: GitHub answered 404"),
        "{ready}"
    );
    assert!(out(&env, "good").exists() && out(&env, "user").exists());
    assert!(!out(&env, "gone").exists());
    drop(d);
}

#[test]
fn reload_starts_added_stops_removed_refreshes_changed_and_keeps_the_rest() {
    let env = TestEnv::new();
    let keep = target(&env, "keep", "installation_id = 100");
    let change = target(&env, "change", "installation_id = 100");
    let remove = target(&env, "remove", "owner = \"octocat\"");
    let config = write_config(
        &env,
        &[keep.clone(), change, remove].concat(),
        "refresh_interval = \"30m\"",
    );
    let (mut n, d, _) = daemon_config_ready(&env, &config);
    let keep_gen = token_file::read(&out(&env, "keep")).unwrap().generation;
    let change_gen = token_file::read(&out(&env, "change")).unwrap().generation;

    let changed = target(
        &env,
        "change",
        "installation_id = 100\nrepositories = [\"infra\"]",
    );
    let added = target(&env, "added", "repo = \"acme/widgets\"");
    write_config(
        &env,
        &[keep, changed, added].concat(),
        "refresh_interval = \"30m\"",
    );
    d.signal(Signal::HUP);
    n.wait_for("RELOADING=1", Duration::from_secs(10), |l| {
        l == "RELOADING=1"
    });
    n.wait_for("READY=1", Duration::from_secs(10), |l| l == "READY=1");
    wait_until(
        "the added and changed targets to mint",
        Duration::from_secs(15),
        || {
            out(&env, "added").exists()
                && token_file::read(&out(&env, "change")).is_ok_and(|f| f.generation > change_gen)
        },
    );
    let changed = token_file::read(&out(&env, "change")).unwrap();
    assert_eq!(changed.repositories, Some(vec!["infra".to_string()]));
    assert_eq!(
        token_file::read(&out(&env, "keep")).unwrap().generation,
        keep_gen,
        "untouched target kept its schedule"
    );
    assert!(
        out(&env, "remove").exists(),
        "a removed target's file is left as it is by default"
    );
    let (_, log) = d.finish(Duration::from_millis(100));
    assert!(
        log.contains("added=1") && log.contains("changed=1") && log.contains("removed=1"),
        "{log}"
    );
}

#[test]
fn config_file_mistakes_and_mixing_with_flags_exit_78() {
    let env = TestEnv::new();
    let config = write_config(
        &env,
        &target(&env, "a", "installation_id = 100\nbogus = 1"),
        "",
    );
    let mut c = bare_cmd();
    c.arg("once").arg("--config").arg(&config);
    let o = run(c);
    assert_eq!(o.status.code(), Some(78));
    let msg = text(&o);
    assert!(
        msg.contains(&format!("{}:8:", config.display())) && msg.contains("bogus"),
        "{msg}"
    );

    let config = write_config(&env, &target(&env, "a", "installation_id = 100"), "");
    let mut c = bare_cmd();
    c.arg("once")
        .arg("--config")
        .arg(&config)
        .args(["--app-id", "1"]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(78));
    assert!(
        text(&o).contains("can't be combined") && text(&o).contains("--app-id"),
        "{}",
        text(&o)
    );
}

#[test]
fn once_check_and_status_understand_the_file() {
    let env = TestEnv::new();
    let targets = [
        target(&env, "org", "installation_id = 100"),
        target(&env, "user", "owner = \"octocat\""),
    ]
    .concat();
    let config = write_config(&env, &targets, "");
    let status = || {
        let mut c = bare_cmd();
        c.arg("status").arg("--json").arg("--config").arg(&config);
        run(c)
    };
    let before = status();
    assert_eq!(before.status.code(), Some(2));

    let mut c = bare_cmd();
    c.arg("once").arg("--config").arg(&config);
    let o = run(c);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let after = status();
    assert_eq!(after.status.code(), Some(0), "{}", text(&after));
    let v: serde_json::Value = serde_json::from_slice(&after.stdout).unwrap();
    let arr = v
        .as_array()
        .expect("status --json is an array with --config");
    assert_eq!(arr.len(), 2);
    assert_eq!(
        (arr[0]["name"].as_str(), arr[0]["state"].as_str()),
        (Some("org"), Some("valid"))
    );
    assert_eq!(arr[1]["installation_id"], 200);

    let mut c = bare_cmd();
    c.arg("check").arg("--config").arg(&config);
    let o = run(c);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("[org]") && t.contains("[user]") && t.contains("installation 200 on octocat"),
        "{t}"
    );
}

#[test]
fn an_installation_is_looked_up_once_for_all_its_targets() {
    // eight targets on two installations (four by id, four by owner): two lookups, not eight
    let env = TestEnv::new();
    let targets: String = (0..8)
        .map(|i| {
            let how = if i % 2 == 0 {
                "installation_id = 100"
            } else {
                "owner = \"octocat\""
            };
            target(&env, &format!("t{i}"), how)
        })
        .collect();
    let config = write_config(&env, &targets, "refresh_interval = \"30m\"");
    let mut n = Notify::new(env.dir.path());
    let d = daemon_config(&config, &n);
    let ready = n.wait_for("READY=1", Duration::from_secs(30), |l| l == "READY=1");
    assert!(ready.contains("STATUS=8 targets: 8 fresh"), "{ready}");
    assert_eq!(env.fake.mint_count(), 8);
    let by_id = env.fake.requests_to("GET", "/app/installations/100").len();
    // an owner is looked up as an organisation first, then as a user: one lookup, two requests
    let orgs = env
        .fake
        .requests_to("GET", "/orgs/octocat/installation")
        .len();
    let users = env
        .fake
        .requests_to("GET", "/users/octocat/installation")
        .len();
    assert_eq!(
        (by_id, orgs, users),
        (1, 1, 1),
        "one lookup per installation"
    );
    let (code, _) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0));
}
