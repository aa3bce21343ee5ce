//! GitHub App JWT verification: RS256 against the App's public key, then GitHub's claim rules.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::Value;

use crate::config::App;

/// GitHub's 401 messages for App JWTs.
pub(crate) const UNDECODABLE: &str = "A JSON web token could not be decoded";
pub(crate) const BAD_IAT: &str =
    "'Issued at' claim ('iat') must be an Integer representing a time in the past";
pub(crate) const EXP_TOO_FAR: &str = "'Expiration time' claim ('exp') is too far in the future";
pub(crate) const BAD_EXP: &str = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";

/// Longest `exp - iat` GitHub accepts: ten minutes.
pub(crate) const MAX_LIFETIME_SECS: i64 = 600;

/// Verifies `token` for one of `apps` at fake-clock time `now` (Unix seconds).
/// Returns the App on success, else GitHub's message.
pub(crate) fn verify<'a>(token: &str, apps: &[&'a App], now: i64) -> Result<&'a App, &'static str> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(UNDECODABLE);
    };
    let header = decode_segment(header).ok_or(UNDECODABLE)?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(UNDECODABLE);
    }
    let claims = decode_segment(payload).ok_or(UNDECODABLE)?;
    let claims = claims.as_object().ok_or(UNDECODABLE)?;
    let app = claims
        .get("iss")
        .and_then(|iss| find_app(iss, apps))
        .ok_or(UNDECODABLE)?;

    let message_len = token.len() - signature.len() - 1;
    let verified = jsonwebtoken::crypto::verify(
        signature,
        &token.as_bytes()[..message_len],
        &app.key.decoding_key(),
        Algorithm::RS256,
    )
    .unwrap_or(false);
    if !verified {
        return Err(UNDECODABLE);
    }

    let iat = claims.get("iat").and_then(Value::as_i64).ok_or(BAD_IAT)?;
    if iat > now {
        return Err(BAD_IAT);
    }
    let exp = claims.get("exp").and_then(Value::as_i64).ok_or(BAD_EXP)?;
    if exp <= now {
        return Err(BAD_EXP);
    }
    if exp.saturating_sub(iat) > MAX_LIFETIME_SECS {
        return Err(EXP_TOO_FAR);
    }
    Ok(app)
}

fn decode_segment(segment: &str) -> Option<Value> {
    // Tolerate padding, which some encoders add although JWS forbids it.
    let bytes = URL_SAFE_NO_PAD.decode(segment.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `iss` may be the App id (number or decimal string) or the App's client id.
fn find_app<'a>(iss: &Value, apps: &[&'a App]) -> Option<&'a App> {
    match iss {
        Value::Number(n) => {
            let id = n.as_u64()?;
            apps.iter().copied().find(|a| a.id == id)
        }
        Value::String(s) => apps
            .iter()
            .copied()
            .find(|a| s.parse::<u64>().ok() == Some(a.id) || *s == a.client_id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::FakeConfig;

    #[test]
    fn claim_rules() {
        let config = FakeConfig::standard();
        let app = config.app();
        let apps = [app];
        let now = 1_800_000_000;
        let ok = |iss: Value| app.jwt_with(json!({"iss": iss, "iat": now - 60, "exp": now + 540}));
        assert_eq!(verify(&ok(json!("1234")), &apps, now).unwrap().id, 1234);
        assert!(verify(&ok(json!(1234)), &apps, now).is_ok());
        assert!(verify(&ok(json!("Iv23liFAKE0000000000")), &apps, now).is_ok());
        assert_eq!(verify(&ok(json!("999")), &apps, now), Err(UNDECODABLE));
        assert_eq!(verify(&ok(json!(null)), &apps, now), Err(UNDECODABLE));
        assert_eq!(verify("garbage", &apps, now), Err(UNDECODABLE));
        assert_eq!(verify("a.b.c", &apps, now), Err(UNDECODABLE));

        let other = crate::key::TestKey::generate();
        let forged = other.sign_jwt(&json!({"iss": "1234", "iat": now - 60, "exp": now + 540}));
        assert_eq!(verify(&forged, &apps, now), Err(UNDECODABLE));

        let at =
            |iat: Value, exp: Value| app.jwt_with(json!({"iss": "1234", "iat": iat, "exp": exp}));
        assert!(verify(&at(json!(now), json!(now + 600)), &apps, now).is_ok());
        assert_eq!(
            verify(&at(json!(now + 1), json!(now + 300)), &apps, now),
            Err(BAD_IAT)
        );
        assert_eq!(
            verify(&at(json!("x"), json!(now + 300)), &apps, now),
            Err(BAD_IAT)
        );
        assert_eq!(
            verify(&at(json!(now - 60), json!(now + 541)), &apps, now),
            Err(EXP_TOO_FAR)
        );
        assert_eq!(
            verify(&at(json!(now - 60), json!(now)), &apps, now),
            Err(BAD_EXP)
        );
        assert_eq!(
            verify(&at(json!(now - 60), json!(1.5)), &apps, now),
            Err(BAD_EXP)
        );
    }
}
