//! Tests of the `fake-github` binary: banner, port file, key output, HTTP control, SIGTERM.

mod common;

use std::io::BufRead as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use common::get_json;

const BIN: &str = env!("CARGO_BIN_EXE_fake-github");

/// Kills the child on drop so a failing test leaves no server behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "fake-github did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn serves_with_written_key_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let port_file = dir.path().join("url");
    let child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--token-lifetime",
            "2m",
            "--key-out",
        ])
        .arg(&keys)
        .arg("--port-file")
        .arg(&port_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let stdout = running.0.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        line
    })
    .await
    .unwrap();
    let url = line
        .strip_prefix("fake-github listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected banner {line:?}"))
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(
        line.trim_end()
            .ends_with("(app id 1234, installations: 100 acme (org), 200 octocat (user))"),
        "{line}"
    );
    assert_eq!(std::fs::read_to_string(&port_file).unwrap().trim(), url);

    let pem_path = keys.join("app.pem");
    let mode = std::fs::metadata(&pem_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pem = std::fs::read_to_string(&pem_path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let pkcs1 = std::fs::read_to_string(keys.join("app.pkcs1.pem")).unwrap();
    assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));

    let now = chrono::Utc::now().timestamp();
    let http = reqwest::Client::builder()
        .user_agent("binary-test")
        .no_proxy()
        .build()
        .unwrap();
    for key_pem in [&pem, &pkcs1] {
        let key = EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap();
        let jwt = jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &json!({"iat": now - 60, "exp": now + 540, "iss": "1234"}),
            &key,
        )
        .unwrap();
        let resp = http
            .post(format!("{url}/app/installations/100/access_tokens"))
            .bearer_auth(&jwt)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        let expires = chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap())
            .unwrap()
            .timestamp();
        assert!(
            (expires - now - 120).abs() <= 3,
            "--token-lifetime 2m: {expires} vs {now}"
        );
        let token = body["token"].as_str().unwrap();
        let valid = get_json(&http, format!("{url}/_fake/tokens/{token}/valid")).await;
        assert_eq!(valid["valid"], true);
    }
    let stats = get_json(&http, format!("{url}/_fake/stats")).await;
    assert_eq!(stats["mints"], 2);

    let pid = running.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = wait_exit(&mut running.0, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

#[test]
fn refuses_non_loopback_and_bad_arguments() {
    let out = Command::new(BIN)
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("non-loopback"));
    let out = Command::new(BIN)
        .args(["--token-lifetime", "5 parsecs"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--key-out <DIR>"));
}
