//! Secret values (installation tokens, App JWTs, private-key bytes) typed so that they
//! cannot reach a log line, an error message, `Debug` output or a panic by accident; and the
//! one rule for what a token's text may be, shared by the mint and every reader.

use std::fmt;

use zeroize::Zeroizing;

/// A secret string. `Debug` and `Display` print `[redacted]`; the only way to the text is
/// [`Secret::expose`], which makes every use greppable. The memory is zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The secret text, for the few places that must send or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// Secret bytes (a private key file's contents), zeroized on drop, never printed.
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[redacted {} bytes]", self.0.len())
    }
}

/// Longest token accepted. GitHub's tokens are 40 characters today and its new format about
/// 520; anything near this is a garbled answer, not a token.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The one rule for a token's text, applied to a minted token before it is written and by
/// every reader of the file: non-empty, at most [`MAX_TOKEN_LEN`] bytes, visible ASCII
/// only. A token travels as an HTTP header, an environment variable and a line of git's
/// credential protocol; whitespace, control characters or non-ASCII would break or inject
/// into those.
pub fn check_token(token: &str) -> Result<(), &'static str> {
    if token.is_empty() {
        Err("the token is empty")
    } else if token.len() > MAX_TOKEN_LEN {
        Err("the token is absurdly long (more than 4096 characters)")
    } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
        Err("the token holds characters a token can't (whitespace, control or non-ASCII)")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("ghs_supersecret");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([redacted])");
        assert_eq!(s.expose(), "ghs_supersecret");
        let b = SecretBytes::new(b"-----BEGIN".to_vec());
        assert!(!format!("{b:?}").contains("BEGIN"));
    }

    #[test]
    fn serde_round_trip_keeps_the_value() {
        let s = Secret::new("ghs_x");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"ghs_x\"");
        let back: Secret = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn the_token_rule() {
        assert!(check_token("ghs_AbC123").is_ok());
        assert!(check_token(&format!("ghs_{}", "a".repeat(516))).is_ok());
        assert!(check_token(&"a".repeat(MAX_TOKEN_LEN)).is_ok());
        assert!(check_token(&"a".repeat(MAX_TOKEN_LEN + 1)).is_err());
        for bad in ["", "ghs a", "ghs_\n", "ghs_\u{1b}[2J", "ghs_é", "ghs_\u{0}"] {
            assert!(check_token(bad).is_err(), "{bad:?}");
        }
    }
}
