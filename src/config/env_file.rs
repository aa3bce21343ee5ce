//! The unit's environment file (`EnvironmentFile=`, e.g. ~/.config/github-token-refresher/env)
//! read the way systemd reads it, so `check --env-file FILE` sees exactly the settings the
//! service will get and setup.sh never parses the file with text tools. Pure: text in,
//! assignments out.
//!
//! The rules (systemd.exec(5), `EnvironmentFile=`): a line starting with `#` or `;` is a
//! comment, a line without `=` is ignored; the name is trimmed; an unquoted value loses its
//! leading and trailing blanks, keeps interior ones, and takes shell backslash escapes
//! (`\x` is `x`, a backslash at the end of a line joins the next); a `'…'` value is verbatim
//! and may span lines; a `"…"` value may span lines and takes `\"`, `\\`, `` \` ``, `\$` and
//! backslash-newline, any other backslash staying as written. An assignment to a name that
//! is not a valid variable name is ignored, as systemd does, and reported.

/// What the file assigns, in order (a later assignment wins), and the lines systemd would
/// ignore with a warning.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EnvFile {
    pub vars: Vec<(String, String)>,
    pub ignored: Vec<String>,
}

pub fn parse(text: &str) -> EnvFile {
    let mut out = EnvFile::default();
    let mut rest = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut line_no = 1;
    while !rest.is_empty() {
        let start_line = line_no;
        let (assignment, consumed) = next_assignment(rest);
        line_no += rest[..consumed].matches('\n').count();
        rest = &rest[consumed..];
        let Some((name, value)) = assignment else {
            continue;
        };
        if is_name(&name) {
            out.vars.push((name, value));
        } else {
            out.ignored.push(format!(
                "line {start_line}: '{}' is not a variable name (letters, digits and '_', not \
                 starting with a digit); systemd ignores this line",
                crate::sanitize::clean(&name)
            ));
        }
    }
    out
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// One logical line from the start of `text`: the assignment it makes (if any) and how many
/// bytes it took (a quoted value or a continuation may span several lines).
fn next_assignment(text: &str) -> (Option<(String, String)>, usize) {
    let line_end = |from: usize| text[from..].find('\n').map_or(text.len(), |i| from + i + 1);
    let first = text.trim_start_matches([' ', '\t', '\r']);
    let skipped = text.len() - first.len();
    if first.starts_with(['#', ';', '\n']) {
        return (None, line_end(skipped));
    }
    let eq = match first.find(['=', '\n']) {
        Some(i) if first.as_bytes()[i] == b'=' => i,
        _ => return (None, line_end(skipped)),
    };
    let name = first[..eq].trim_matches([' ', '\t', '\r']).to_string();
    let at = skipped + eq + 1;
    let (value, end) = value(text, at);
    (Some((name, value)), end)
}

/// The value starting at byte `at`, and the byte after the logical line it ends.
fn value(text: &str, at: usize) -> (String, usize) {
    let mut chars = text[at..].char_indices().peekable();
    while chars.next_if(|&(_, c)| matches!(c, ' ' | '\t')).is_some() {}
    let mut out = String::new();
    // trailing blanks of an unquoted value are dropped, except escaped ones
    let mut keep = 0;
    let mut end = text.len();
    while let Some((i, c)) = chars.next() {
        match c {
            '\n' => {
                end = at + i + 1;
                break;
            }
            '\'' if out.is_empty() => {
                out.extend(chars.by_ref().map(|(_, c)| c).take_while(|&c| c != '\''));
                keep = out.len();
                end = skip_to_line_end(text, &mut chars, at);
                break;
            }
            '"' if out.is_empty() => {
                double_quoted(&mut chars, &mut out);
                keep = out.len();
                end = skip_to_line_end(text, &mut chars, at);
                break;
            }
            '\\' => match chars.next() {
                Some((_, '\n')) | None => {}
                Some((_, e)) => {
                    out.push(e);
                    keep = out.len();
                }
            },
            c => {
                out.push(c);
                if !matches!(c, ' ' | '\t' | '\r') {
                    keep = out.len();
                }
            }
        }
    }
    out.truncate(keep);
    (out, end)
}

fn double_quoted(chars: &mut impl Iterator<Item = (usize, char)>, out: &mut String) {
    while let Some((_, c)) = chars.next() {
        match c {
            '"' => return,
            '\\' => match chars.next() {
                Some((_, '\n')) | None => {}
                Some((_, e @ ('"' | '\\' | '`' | '$'))) => out.push(e),
                Some((_, e)) => {
                    out.push('\\');
                    out.push(e);
                }
            },
            c => out.push(c),
        }
    }
}

/// After a closing quote, the rest of the line is dropped (systemd ignores it too).
fn skip_to_line_end(
    text: &str,
    chars: &mut impl Iterator<Item = (usize, char)>,
    at: usize,
) -> usize {
    chars
        .find(|&(_, c)| c == '\n')
        .map_or(text.len(), |(i, _)| at + i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> Vec<(String, String)> {
        parse(text).vars
    }

    fn pairs(want: &[(&str, &str)]) -> Vec<(String, String)> {
        want.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn one(text: &str) -> String {
        let v = vars(text);
        assert_eq!(v.len(), 1, "{text:?} -> {v:?}");
        v[0].1.clone()
    }

    #[test]
    fn what_setup_writes() {
        let text = "# github-token-refresher configuration, written by setup.sh\n\
                    # Every setting is also a command-line flag\n\
                    GITHUB_APP_ID=123456\n\
                    GITHUB_APP_OWNER=acme\n\
                    GITHUB_TOKEN_FILE=/home/u/github-token/token.json\n";
        let want = [
            ("GITHUB_APP_ID", "123456"),
            ("GITHUB_APP_OWNER", "acme"),
            ("GITHUB_TOKEN_FILE", "/home/u/github-token/token.json"),
        ];
        assert_eq!(vars(text), pairs(&want));
    }

    #[test]
    fn comments_blank_lines_and_lines_without_equals_are_skipped() {
        let v = vars("\n  # a=b\n; c=d\njust words\n\n  E = f \n");
        assert_eq!(v, pairs(&[("E", "f")]));
    }

    /// Each line's value as systemd reads it.
    fn assert_values(cases: &[(&str, &str)]) {
        for (text, want) in cases {
            assert_eq!(one(text), *want, "{text:?}");
        }
    }

    #[test]
    fn unquoted_values_keep_interior_blanks_and_take_escapes() {
        assert_values(&[
            ("A=  x  y  \n", "x  y"),
            ("A=a\\ \n", "a "),
            ("A=a\\\\b\n", "a\\b"),
            ("A=a\\\nb\n", "ab"),
            ("A=it's \"x\"\n", "it's \"x\""),
            ("A=\r\n", ""),
            ("A=/p/t.json\r\n", "/p/t.json"),
        ]);
    }

    #[test]
    fn quoted_values() {
        assert_values(&[
            ("A='x \\n $y'\n", "x \\n $y"),
            ("A=\"x \\\"y\\\" \\$z \\q\"\n", "x \"y\" $z \\q"),
            ("A='two\nlines'\n", "two\nlines"),
            ("A=\"two\\\nlines\"\n", "twolines"),
            ("A=  'padded'  \n", "padded"),
            ("A='unterminated", "unterminated"),
        ]);
    }

    #[test]
    fn later_assignments_come_later_and_the_last_line_needs_no_newline() {
        let v = vars("A=1\nB='x\ny'\nA=2");
        assert_eq!(v, pairs(&[("A", "1"), ("B", "x\ny"), ("A", "2")]));
    }

    #[test]
    fn a_bad_name_is_ignored_and_reported_with_its_line() {
        let f = parse("A=1\n\nexport B=2\n9C=3\n");
        assert_eq!(f.vars, pairs(&[("A", "1")]));
        assert_eq!(f.ignored.len(), 2);
        assert!(
            f.ignored[0].starts_with("line 3: 'export B'"),
            "{:?}",
            f.ignored
        );
        assert!(f.ignored[1].starts_with("line 4: '9C'"), "{:?}", f.ignored);
    }

    #[test]
    fn line_numbers_count_the_lines_a_quoted_value_spans() {
        let f = parse("A='1\n2\n3'\n-x=1\n");
        assert!(f.ignored[0].starts_with("line 4:"), "{:?}", f.ignored);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "[A-Z_=#; \t\r\n'\"\\\\a-z0-9$`\u{feff}é]{0,80}") {
            let f = parse(&text);
            for (name, _) in &f.vars {
                proptest::prop_assert!(is_name(name));
            }
        }
    }
}
