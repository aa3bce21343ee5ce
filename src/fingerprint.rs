//! Token fingerprints: a short, stable name for a token that says nothing about it. The
//! first 6 bytes of its SHA-256 in hex (12 characters) go on every mint, revocation and
//! `status` line and into the token file, so a token found in a log, a leaked artifact or
//! a bug report can be traced to its target and generation without ever printing it.
//!
//! 48 bits leave a token unguessable from its fingerprint (a token has > 160 bits of
//! entropy, the fingerprint names 2^48 buckets) yet make a collision among the few thousand
//! tokens a host mints in a year vanishingly unlikely (≈ n²/2^49).

use std::io::Read;

use aws_lc_rs::digest;

use crate::error::exit;

/// Hex characters in a fingerprint.
pub const LEN: usize = 12;

/// The fingerprint of `token`.
pub fn of(token: &str) -> String {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    d.as_ref()[..LEN / 2]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The token in `input`: the text itself without surrounding whitespace, or the `token`
/// field when `input` is a token file (so `fingerprint < token.json` works too).
pub fn token_in(input: &str) -> Result<zeroize::Zeroizing<String>, String> {
    let text = input.trim();
    if text.is_empty() {
        return Err("no token on stdin: pipe a token or a token file into it".into());
    }
    if text.starts_with('{') {
        let file = crate::token_file::TokenFile::parse(text)?;
        return Ok(zeroize::Zeroizing::new(file.token.expose().to_owned()));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("stdin holds more than one word: pipe exactly one token".into());
    }
    Ok(zeroize::Zeroizing::new(text.to_owned()))
}

/// `github-token-refresher fingerprint`: read a token (or a token file) on stdin, print its
/// fingerprint. Exit 0, or 2 when stdin holds no token.
pub fn main() -> i32 {
    let mut input = zeroize::Zeroizing::new(String::new());
    if let Err(e) = std::io::stdin().take(1 << 20).read_to_string(&mut input) {
        eprintln!("github-token-refresher fingerprint: cannot read stdin: {e}");
        return exit::NO_TOKEN_FILE;
    }
    match token_in(&input) {
        Ok(token) => {
            println!("{}", of(&token));
            exit::OK
        }
        Err(e) => {
            eprintln!("github-token-refresher fingerprint: {e}");
            exit::NO_TOKEN_FILE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_the_start_of_the_sha256() {
        // printf %s ghs_example | sha256sum
        assert_eq!(of("ghs_example"), "50c6918d5a1e");
        assert_eq!(of("ghs_example").len(), LEN);
        assert_ne!(of("ghs_example"), of("ghs_examplf"));
    }

    #[test]
    fn reads_a_bare_token_or_a_token_file() {
        assert_eq!(*token_in("ghs_abc\n").unwrap(), "ghs_abc");
        let file = r#"{"token":"ghs_abc","expires_at":"2027-01-15T10:00:00Z"}"#;
        assert_eq!(*token_in(file).unwrap(), "ghs_abc");
        assert!(token_in("  \n").is_err());
        assert!(token_in("ghs_a ghs_b").is_err());
        let err = token_in(r#"{"token":"ghs_secret","expires_at":"soon"}"#).unwrap_err();
        assert!(!err.contains("ghs_secret"), "{err}");
    }
}
