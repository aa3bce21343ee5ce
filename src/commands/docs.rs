//! `completions` and `manpage`: shell completion scripts and manual pages generated from the
//! clap definitions in `cli`, so they can never disagree with `--help`.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::exit;

/// The name completions and man pages are for (whatever the binary's file is called).
const NAME: &str = "github-token-refresher";

/// Print the completion script for `shell` to stdout.
pub fn completions(shell: clap_complete::Shell) -> i32 {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), NAME, &mut script);
    write_stdout(&script)
}

/// Print the main page to stdout, or write every page into `dir`.
pub fn manpage(dir: Option<&Path>) -> i32 {
    match dir {
        Some(dir) => match write_pages(dir) {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("{NAME}: manpage --dir '{}': {e}", dir.display());
                exit::FAILURE
            }
        },
        None => match render(prepared()) {
            Ok(page) => write_stdout(page.as_bytes()),
            Err(e) => {
                eprintln!("{NAME}: cannot render the manual page: {e}");
                exit::FAILURE
            }
        },
    }
}

/// `github-token-refresher.1` and `github-token-refresher-SUBCOMMAND.1` for each command.
pub fn write_pages(dir: &Path) -> std::io::Result<()> {
    if !dir.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "not a directory; create it first (e.g. ~/.local/share/man/man1)",
        ));
    }
    fn each(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            each(sub, dir)?;
        }
        let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name());
        std::fs::write(dir.join(format!("{name}.1")), render(cmd.clone())?)
    }
    each(&prepared(), dir)
}

/// The command as the pages describe it: built (so subcommands know their full names), and
/// without clap's `help` subcommand, which needs no page.
fn prepared() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// One page as roff text. clap_mangen calls the `after_help` section EXTRA: ours is the exit
/// status (or, for `completions`, notes). Characters beyond ASCII become groff escapes, so
/// the page renders the same without `preconv` (plain `groff -man`).
fn render(cmd: clap::Command) -> std::io::Result<String> {
    let after = cmd
        .get_after_help()
        .map(|h| h.to_string())
        .unwrap_or_default();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page)?;
    let page = String::from_utf8_lossy(&page);
    let heading = if after.starts_with("Exit status:") {
        ".SH \"EXIT STATUS\""
    } else {
        ".SH NOTES"
    };
    let mut out = String::with_capacity(page.len());
    for c in page.replace(".SH EXTRA", heading).chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out += &format!("\\[u{:04X}]", u32::from(c));
        }
    }
    Ok(out)
}

fn write_stdout(bytes: &[u8]) -> i32 {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => exit::OK,
        // a closed pipe (`| head`) is the reader's choice, not a failure to report
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => {
            eprintln!("{NAME}: cannot write to stdout: {e}");
            exit::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_is_written() {
        let dir = tempfile::tempdir().unwrap();
        write_pages(dir.path()).unwrap();
        for page in [
            "github-token-refresher.1",
            "github-token-refresher-run.1",
            "github-token-refresher-status.1",
            "github-token-refresher-git-credential.1",
            "github-token-refresher-completions.1",
        ] {
            let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
            assert!(text.contains(".SH NAME"), "{page}");
        }
        assert!(write_pages(&dir.path().join("missing")).is_err());
    }
}
