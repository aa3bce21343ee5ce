//! RSA test keys: generation with aws-lc-rs and PEM encodings (PKCS#1, PKCS#8, SPKI).

use std::fmt;
use std::sync::OnceLock;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};

/// An RSA 2048 key pair for a fake GitHub App, in every encoding a test needs.
///
/// `pkcs1_pem` and `pkcs8_pem` hold the *same* private key; GitHub hands out
/// PKCS#1 (`-----BEGIN RSA PRIVATE KEY-----`) files, tools such as `openssl pkcs8`
/// turn them into PKCS#8 (`-----BEGIN PRIVATE KEY-----`), and a client must accept both.
#[derive(Clone, PartialEq, Eq)]
pub struct TestKey {
    /// `-----BEGIN RSA PRIVATE KEY-----` (PKCS#1 `RSAPrivateKey`), as GitHub's downloads.
    pub pkcs1_pem: String,
    /// `-----BEGIN PRIVATE KEY-----` (PKCS#8 `PrivateKeyInfo`) of the same key.
    pub pkcs8_pem: String,
    /// `-----BEGIN PUBLIC KEY-----` (X.509 `SubjectPublicKeyInfo`) of the key.
    pub public_pem: String,
    /// DER `RSAPublicKey` (PKCS#1): what the fake verifies JWT signatures against.
    pub public_der: Vec<u8>,
}

impl fmt::Debug for TestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print private key material, even a throwaway one.
        f.debug_struct("TestKey")
            .field("public_pem", &self.public_pem)
            .finish_non_exhaustive()
    }
}

impl TestKey {
    /// Generates a fresh RSA 2048 key with aws-lc-rs. Takes tens to hundreds of
    /// milliseconds; prefer [`TestKey::shared`] when the key's identity does not matter.
    ///
    /// # Panics
    /// If aws-lc-rs fails to generate or serialise the key (it does not in practice).
    #[must_use]
    pub fn generate() -> TestKey {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("aws-lc-rs RSA 2048 key generation");
        let pkcs8 = pair.as_der().expect("serialise RSA key as PKCS#8");
        let pkcs8_der: &[u8] = pkcs8.as_ref();
        let pkcs1_der =
            pkcs1_from_pkcs8(pkcs8_der).expect("aws-lc-rs produced a well-formed PKCS#8 RSA key");
        let public = pair.public_key();
        let spki = public.as_der().expect("serialise RSA public key as SPKI");
        let key = TestKey {
            pkcs1_pem: pem_encode("RSA PRIVATE KEY", pkcs1_der),
            pkcs8_pem: pem_encode("PRIVATE KEY", pkcs8_der),
            public_pem: pem_encode("PUBLIC KEY", spki.as_ref()),
            public_der: public.as_ref().to_vec(),
        };
        // The PKCS#1 extraction must describe the very same key.
        let reparsed = KeyPair::from_der(pkcs1_der).expect("extracted PKCS#1 key parses");
        assert_eq!(reparsed.public_key().as_ref(), key.public_der.as_slice());
        key
    }

    /// A process-wide key, generated on first use and shared by every caller.
    #[must_use]
    pub fn shared() -> &'static TestKey {
        static SHARED: OnceLock<TestKey> = OnceLock::new();
        SHARED.get_or_init(TestKey::generate)
    }

    /// The signing key for `jsonwebtoken` (built from the PKCS#1 PEM).
    ///
    /// # Panics
    /// Never for keys made by [`TestKey::generate`].
    #[must_use]
    pub fn encoding_key(&self) -> EncodingKey {
        EncodingKey::from_rsa_pem(self.pkcs1_pem.as_bytes()).expect("test key PEM parses")
    }

    /// The verification key for `jsonwebtoken`.
    #[must_use]
    pub fn decoding_key(&self) -> DecodingKey {
        DecodingKey::from_rsa_der(&self.public_der)
    }

    /// Signs `claims` as an RS256 JWT with this key (`{"alg":"RS256","typ":"JWT"}`).
    ///
    /// # Panics
    /// If the claims cannot be serialised or signing fails.
    #[must_use]
    pub fn sign_jwt(&self, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &self.encoding_key())
            .expect("sign test JWT")
    }
}

/// PEM-armours `der` under `label`, 64 base64 characters a line, ending in a newline.
#[must_use]
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so any chunking is valid UTF-8.
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Extracts the PKCS#1 `RSAPrivateKey` from a PKCS#8 `PrivateKeyInfo`:
///
/// ```text
/// PrivateKeyInfo ::= SEQUENCE {
///   version             INTEGER,
///   privateKeyAlgorithm AlgorithmIdentifier,   -- SEQUENCE
///   privateKey          OCTET STRING,          -- the RSAPrivateKey DER
///   attributes      [0] IMPLICIT Attributes OPTIONAL }
/// ```
///
/// Returns `None` on any malformation.
#[must_use]
pub fn pkcs1_from_pkcs8(der: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const OCTET_STRING: u8 = 0x04;
    let (tag, body, rest) = der_read(der)?;
    if tag != SEQUENCE || !rest.is_empty() {
        return None;
    }
    let (tag, _version, body) = der_read(body)?;
    if tag != INTEGER {
        return None;
    }
    let (tag, _algorithm, body) = der_read(body)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, key, _attributes) = der_read(body)?;
    if tag != OCTET_STRING {
        return None;
    }
    Some(key)
}

/// Reads one DER TLV (single-byte tags only): returns (tag, value, remainder).
fn der_read(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > std::mem::size_of::<usize>() || rest.len() < n {
            return None;
        }
        let (len_bytes, after) = rest.split_at(n);
        rest = after;
        len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (value, remainder) = rest.split_at(len);
    Some((tag, value, remainder))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_reader_handles_short_and_long_lengths() {
        assert_eq!(
            der_read(&[0x02, 0x01, 0x05, 0xff]),
            Some((0x02, &[0x05][..], &[0xff][..]))
        );
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend(std::iter::repeat_n(7u8, 0x80));
        let (tag, value, rest) = der_read(&long).unwrap();
        assert_eq!((tag, value.len(), rest.len()), (0x04, 0x80, 0));
        assert_eq!(der_read(&[0x04, 0x82, 0x01]), None);
        assert_eq!(der_read(&[0x04, 0x05, 0x00]), None);
        assert_eq!(pkcs1_from_pkcs8(&[0x30, 0x00]), None);
    }

    #[test]
    fn pem_lines_are_64_wide() {
        let pem = pem_encode("TEST", &[0u8; 100]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN TEST-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(*lines.last().unwrap(), "-----END TEST-----");
    }

    #[test]
    fn shared_key_has_both_private_encodings_of_one_key() {
        let key = TestKey::shared();
        assert!(
            key.pkcs1_pem
                .starts_with("-----BEGIN RSA PRIVATE KEY-----\n")
        );
        assert!(key.pkcs8_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(key.public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(std::ptr::eq(key, TestKey::shared()));
        let claims = serde_json::json!({"iss": "1", "iat": 1, "exp": 2});
        let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        for pem in [&key.pkcs1_pem, &key.pkcs8_pem] {
            let enc = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
            let jwt = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &enc).unwrap();
            let data =
                jsonwebtoken::decode::<serde_json::Value>(&jwt, &key.decoding_key(), &validation)
                    .unwrap();
            assert_eq!(data.claims, claims);
        }
        let from_spki = DecodingKey::from_rsa_pem(key.public_pem.as_bytes()).unwrap();
        let jwt = key.sign_jwt(&claims);
        jsonwebtoken::decode::<serde_json::Value>(&jwt, &from_spki, &validation).unwrap();
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }
}
