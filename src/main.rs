//! The `github-token-refresher` binary: everything is in the library.

fn main() {
    std::process::exit(github_token_refresher::main_with_args(std::env::args_os()));
}
