//! The one sanitiser for text from outside — GitHub's answers (logins, repository names,
//! messages) and the fields of a token file in the shared directory — on its way to a log
//! line, `STATUS=`, `status`/`check` output or an error: control characters (newline, ESC,
//! DEL, C1) and the Unicode controls that reorder text on screen are escaped, so such text
//! can never forge a log line, move the cursor or colour the terminal; and it is capped in
//! length.

/// Longest text kept (a GitHub login is at most 39 characters, a repository name 100).
pub const MAX_CHARS: usize = 256;

/// `s` with every control or bidirectional-formatting character escaped (`\n`, `\u{1b}`),
/// cut to [`MAX_CHARS`] characters of output (an ellipsis marks the cut). Cleaning clean text
/// changes nothing.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_CHARS));
    let mut count = 0;
    for c in s.chars() {
        let piece: String = if is_unsafe(c) {
            c.escape_default().collect()
        } else {
            c.into()
        };
        count += piece.chars().count();
        if count > MAX_CHARS {
            out.push('…');
            break;
        }
        out.push_str(&piece);
    }
    out
}

/// Control characters, and the characters that change the order text is displayed in
/// (they can make a line read differently from its bytes).
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `#[serde(deserialize_with = "crate::sanitize::string")]`: a string field cleaned as it
/// is read.
pub fn string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s: String = serde::Deserialize::deserialize(d)?;
    Ok(clean(&s))
}

/// serde_json's message (the field, what was expected, the position) without the values it
/// quotes: `invalid type: string "ghs_…", expected u64` would print a token that sits in the
/// wrong field.
pub fn json_error_without_values(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let mut out = String::with_capacity(msg.len());
    let (mut quoted, mut escaped) = (false, false);
    for c in msg.chars() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => {
                quoted = false;
                out.push_str("\"…\"");
            }
            (true, false, _) => {}
            (false, _, '"') => quoted = true,
            (false, _, c) => out.push(c),
        }
    }
    if quoted {
        out.push_str("\"…");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_the_rest_kept() {
        assert_eq!(clean("acme-corp"), "acme-corp");
        assert_eq!(clean("Zoë 東京"), "Zoë 東京");
        assert_eq!(
            clean("evil\nINFO forged\u{1b}[31m"),
            "evil\\nINFO forged\\u{1b}[31m"
        );
        assert_eq!(clean("a\u{202e}b\u{7f}\u{85}"), "a\\u{202e}b\\u{7f}\\u{85}");
        assert_eq!(clean(&"x".repeat(1000)).chars().count(), MAX_CHARS + 1);
        assert_eq!(clean(&"\n".repeat(1000)).chars().count(), MAX_CHARS + 1);
    }

    proptest::proptest! {
        #[test]
        fn cleaned_text_has_no_controls_and_cleaning_is_stable(s in "\\PC{0,40}|[\\x00-\\x1f\\x7f-\\u{9f}a\\\\]{0,40}") {
            let c = clean(&s);
            proptest::prop_assert!(!c.chars().any(is_unsafe), "{:?}", c);
            proptest::prop_assert_eq!(clean(&c), c);
        }
    }
}
