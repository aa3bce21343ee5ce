//! `fake-github`: runs the fake GitHub API with the standard test configuration until
//! SIGINT/SIGTERM, for demos and end-to-end shell tests (steer it through `/_fake/…`).
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fake_github::{AccountType, FakeConfig, FakeGithub, TestKey};

/// A fake GitHub REST API (App JWT auth, installations, access tokens, fault injection)
/// on a loopback address.
#[derive(Debug, Parser)]
#[command(name = "fake-github", version)]
struct Args {
    /// Address to listen on; must be loopback (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: SocketAddr,

    /// Lifetime of minted installation tokens, e.g. 3600s, 90s, 2m, 1h, 500ms (bare number: seconds).
    #[arg(long, default_value = "3600s", value_parser = parse_duration, value_name = "DURATION")]
    token_lifetime: Duration,

    /// Generate a fresh App key and write it to DIR/app.pem (PKCS#8, mode 0600; also
    /// DIR/app.pkcs1.pem and DIR/app.pub.pem). Without it the App uses a key generated at start.
    #[arg(long, value_name = "DIR")]
    key_out: Option<PathBuf>,

    /// Write the base URL (http://127.0.0.1:PORT) to this file once listening.
    #[arg(long, value_name = "PATH")]
    port_file: Option<PathBuf>,

    /// Log each API request on stderr.
    #[arg(long, short)]
    verbose: bool,
}

/// Parses `3600s`, `90s`, `2m`, `1h`, `500ms` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 90s, 2m, 1h"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "invalid duration unit {unit:?} in {s:?}: use ms, s, m or h"
            ));
        }
    };
    if d.is_zero() {
        return Err("the token lifetime must be positive".to_owned());
    }
    Ok(d)
}

/// Writes `contents` to `path` atomically (temporary file + rename) with `mode`.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let file_name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{file_name}.tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

fn write_keys(dir: &Path, key: &TestKey) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_file(&dir.join("app.pem"), key.pkcs8_pem.as_bytes(), 0o600)?;
    write_file(&dir.join("app.pkcs1.pem"), key.pkcs1_pem.as_bytes(), 0o600)?;
    write_file(&dir.join("app.pub.pem"), key.public_pem.as_bytes(), 0o644)
}

fn banner(github: &FakeGithub) -> String {
    let mut parts = Vec::new();
    let mut app_ids = Vec::new();
    for (app, installations) in github.apps() {
        app_ids.push(app.id.to_string());
        for i in installations {
            let kind = match i.account_type {
                AccountType::Organization => "org",
                AccountType::User => "user",
            };
            parts.push(format!("{} {} ({kind})", i.id, i.account));
        }
    }
    format!(
        "fake-github listening on {} (app id {}, installations: {})",
        github.url(),
        app_ids.join(", "),
        parts.join(", ")
    )
}

async fn wait_for_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "fake-github: refusing to listen on non-loopback address {}",
            args.listen
        );
        return ExitCode::from(2);
    }
    let mut config = match &args.key_out {
        Some(dir) => {
            let key = TestKey::generate();
            if let Err(e) = write_keys(dir, &key) {
                eprintln!("fake-github: cannot write key to {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
            FakeConfig::standard_with_key(key)
        }
        None => FakeConfig::standard(),
    };
    config.token_lifetime = args.token_lifetime;

    let github = match FakeGithub::start_on(args.listen, config).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("fake-github: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    github.set_verbose(args.verbose);
    let url_line = format!("{}\n", github.url());
    let port_file = args
        .port_file
        .as_ref()
        .map(|path| (path, write_file(path, url_line.as_bytes(), 0o644)));
    if let Some((path, Err(e))) = port_file {
        eprintln!("fake-github: cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", banner(&github));
    let _ = stdout.flush();
    drop(stdout);
    if args.key_out.is_none() {
        eprintln!("fake-github: the App key is ephemeral; pass --key-out DIR to obtain it");
    }

    if let Err(e) = wait_for_signal().await {
        eprintln!("fake-github: cannot wait for signals: {e}");
        return ExitCode::FAILURE;
    }
    drop(github);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3600s"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("s").is_err());
    }
}
