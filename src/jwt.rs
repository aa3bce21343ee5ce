//! The App's private key (load, check, parse) and the App JWT: claims (iss = App ID or
//! Client ID, iat back-dated 60 s, exp within GitHub's 10-minute limit) and RS256 signing,
//! with a cache so that one JWT serves many requests until shortly before it expires.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::secret::{Secret, SecretBytes};

/// Why the App's private key can't be used: one line naming the file and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub String);

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

/// `iat` is this far in the past, to absorb small clock differences (GitHub's advice).
pub const IAT_BACKDATE_SECS: i64 = 60;
/// `exp` is this far after `iat`: 9 minutes, inside GitHub's 10-minute limit.
pub const LIFETIME_SECS: i64 = 540;
/// A cached JWT is reused while it has at least this long left.
pub const REUSE_MARGIN_SECS: i64 = 120;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

/// Claims for a JWT issued at `now` (Unix seconds, by GitHub's clock).
pub fn claims(app_id: &str, now: i64) -> Claims {
    let iat = now - IAT_BACKDATE_SECS;
    Claims {
        iat,
        exp: iat + LIFETIME_SECS,
        iss: app_id.to_owned(),
    }
}

/// A parsed RSA private key. Never printed.
pub struct AppKey {
    key: EncodingKey,
    pub path: PathBuf,
}

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AppKey({:?}, [redacted])", self.path)
    }
}

impl AppKey {
    pub fn sign(&self, claims: &Claims) -> Result<Secret, String> {
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &self.key)
            .map(Secret::new)
            // jsonwebtoken's errors describe the failure, not the key
            .map_err(|e| format!("signing the App JWT failed: {e}"))
    }
}

/// Read the key file: it must exist, be owner-only (like ssh), and hold an RSA private key
/// in PEM (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`).
pub fn load_key(path: &Path) -> Result<AppKey, KeyError> {
    let shown = path.display();
    let fail = |msg: String| Err(KeyError(msg));
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return fail(format!(
                "private key file '{shown}' does not exist: download a key from the App's \
                 settings page (Private keys → Generate) and pass its path with --private-key-file"
            ));
        }
        Err(e) => return fail(format!("cannot read private key file '{shown}': {e}")),
    };
    if !meta.is_file() {
        return fail(format!("private key file '{shown}' is not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    // Like PostgreSQL's ssl_key_file: a key owned by root may also be readable by its
    // group. That is how Kubernetes mounts a Secret for a non-root container (root:fsGroup
    // 0440); a group the user shares with others stays refused for the user's own files.
    let allowed_group_read = if std::os::unix::fs::MetadataExt::uid(&meta) == 0 {
        0o040
    } else {
        0
    };
    if mode & 0o077 & !allowed_group_read != 0 {
        return fail(format!(
            "private key file '{shown}' is accessible by group or others (mode {mode:04o}); \
             run: chmod 600 '{shown}'"
        ));
    }
    let bytes = match fs::read(path) {
        Ok(b) => SecretBytes::new(b),
        Err(e) => return fail(format!("cannot read private key file '{shown}': {e}")),
    };
    parse_key(bytes.expose(), path)
}

/// Parse PEM text into a key, with a precise reason when it isn't a usable RSA key.
pub fn parse_key(pem: &[u8], path: &Path) -> Result<AppKey, KeyError> {
    let shown = path.display();
    let text = String::from_utf8_lossy(pem);
    let fail = |why: &str| Err(KeyError(format!("private key file '{shown}' {why}")));
    if text.trim().is_empty() {
        return fail("is empty: download a new .pem from the App's settings page");
    }
    if text.contains("ENCRYPTED") {
        return fail(
            "is encrypted; GitHub's App keys are not: decrypt it with \
             `openssl pkey -in KEY -out DECRYPTED.pem` and point --private-key-file there",
        );
    }
    if text.contains("BEGIN EC PRIVATE KEY") || text.contains("BEGIN OPENSSH PRIVATE KEY") {
        return fail(
            "is not an RSA key (GitHub Apps sign with RSA): use the .pem downloaded from the \
             App's settings page",
        );
    }
    if text.contains("PUBLIC KEY") && !text.contains("PRIVATE KEY") {
        return fail("holds a public key; the App's private key is needed");
    }
    let key = match EncodingKey::from_rsa_pem(pem) {
        Ok(k) => k,
        // PKCS#8 holds any algorithm: an EC or Ed25519 key has the same PEM header
        Err(_) if text.contains("-----BEGIN PRIVATE KEY-----") => {
            return fail(
                "holds a private key that is not an RSA key, or is corrupt (GitHub Apps sign \
                 with RSA): use the .pem downloaded from the App's settings page",
            );
        }
        Err(_) => {
            return fail(
                "does not hold an RSA private key in PEM form (-----BEGIN RSA PRIVATE KEY----- \
                 or -----BEGIN PRIVATE KEY-----)",
            );
        }
    };
    let key = AppKey {
        key,
        path: path.to_owned(),
    };
    // parsing the DER happens at signing time: sign once now so a bad key fails here
    if key.sign(&claims("0", 0)).is_err() {
        return fail(
            "holds a key that cannot sign RS256 (corrupt, or not an RSA key of at least 2048 bits)",
        );
    }
    Ok(key)
}

/// Signs App JWTs and reuses one until [`REUSE_MARGIN_SECS`] before it expires.
#[derive(Debug)]
pub struct JwtSigner {
    pub app_id: String,
    key: AppKey,
    cached: Mutex<Option<(Secret, Claims)>>,
}

impl JwtSigner {
    pub fn new(app_id: String, key: AppKey) -> Self {
        JwtSigner {
            app_id,
            key,
            cached: Mutex::new(None),
        }
    }

    pub fn key_path(&self) -> &Path {
        &self.key.path
    }

    /// A JWT valid at `now` (Unix seconds by GitHub's clock).
    pub fn jwt(&self, now: i64) -> Result<Secret, String> {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((jwt, c)) = cached.as_ref()
            && c.iat <= now
            && c.exp - now >= REUSE_MARGIN_SECS
        {
            return Ok(jwt.clone());
        }
        let c = claims(&self.app_id, now);
        let jwt = self.key.sign(&c)?;
        *cached = Some((jwt.clone(), c));
        Ok(jwt)
    }

    /// Forget the cached JWT (after GitHub refused it, e.g. for clock skew).
    pub fn invalidate(&self) {
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_follow_githubs_rules() {
        let c = claims("1234", 1_800_000_000);
        assert_eq!(c.iat, 1_800_000_000 - 60);
        assert!(c.exp - c.iat <= 600, "at most 10 minutes after iat");
        assert!(
            c.exp > 1_800_000_000 + 300,
            "valid for several minutes from now"
        );
        assert_eq!(c.iss, "1234");
        let c = claims("Iv23liABC", 5);
        assert_eq!(c.iss, "Iv23liABC");
        let json = serde_json::to_value(&c).unwrap();
        assert!(
            json["iat"].is_i64() && json["exp"].is_i64(),
            "integers, as GitHub requires"
        );
    }

    #[test]
    fn bad_keys_get_precise_errors() {
        let p = Path::new("/k.pem");
        let e = |pem: &str| parse_key(pem.as_bytes(), p).unwrap_err().0;
        assert!(e("").contains("is empty"));
        assert!(
            e("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
                .contains("encrypted")
        );
        assert!(
            e("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")
                .contains("not an RSA key")
        );
        assert!(e("hello").contains("does not hold an RSA private key"));
        // PKCS#8 of another algorithm (an Ed25519 key, as `openssl genpkey` writes it)
        assert!(
            e("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ2PQ8QYWQfvP1Qc3w1kO2RCVnZC3b3hVZ8M7m0nWq7D\n-----END PRIVATE KEY-----\n")
                .contains("not an RSA key")
        );
        assert!(
            e("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")
                .starts_with("private key file '/k.pem'")
        );
    }

    proptest::proptest! {
        #[test]
        fn any_key_file_contents_are_refused_or_accepted_without_a_panic(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
        ) {
            let _ = parse_key(&bytes, Path::new("/k.pem"));
        }

        #[test]
        fn pem_armour_around_junk_is_refused_without_a_panic(
            label in proptest::sample::select(vec!["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY"]),
            body in "[A-Za-z0-9+/=\n]{0,600}",
        ) {
            let pem = format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n");
            let e = parse_key(pem.as_bytes(), Path::new("/k.pem"));
            proptest::prop_assert!(e.is_err());
            proptest::prop_assert!(!e.unwrap_err().0.contains(body.trim()) || body.trim().len() < 8);
        }
    }

    #[test]
    fn group_readable_key_is_refused_with_the_chmod_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.pem");
        fs::write(&path, "x").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_key(&path).unwrap_err().0;
        assert!(
            e.contains("mode 0644") && e.contains(&format!("chmod 600 '{}'", path.display())),
            "{e}"
        );
        let missing = load_key(&dir.path().join("nope.pem")).unwrap_err().0;
        assert!(missing.contains("does not exist"), "{missing}");
    }
}
