//! The scope a pull request asks for (`?repositories=a,b&permissions=contents:read`),
//! parsed and checked against the target's own scope: a sandbox may narrow its token,
//! never widen it. Pure.

use std::collections::BTreeMap;

use crate::config::{Spelling, Target, parse_permissions, parse_repositories, permission_pairs};

/// Repositories (sorted) and permissions; both empty: the target's own scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Scope {
    pub repositories: Vec<String>,
    pub permissions: BTreeMap<String, String>,
}

impl Scope {
    pub fn is_default(&self) -> bool {
        self.repositories.is_empty() && self.permissions.is_empty()
    }

    /// For logs: `repositories=a,b permissions=contents:read`, or `target scope`.
    pub fn describe(&self) -> String {
        if self.is_default() {
            return "target scope".into();
        }
        let mut parts = Vec::new();
        if !self.repositories.is_empty() {
            parts.push(format!("repositories={}", self.repositories.join(",")));
        }
        if !self.permissions.is_empty() {
            let p: Vec<String> = self
                .permissions
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect();
            parts.push(format!("permissions={}", p.join(",")));
        }
        parts.join(" ")
    }

    /// The target with this scope applied (what to ask GitHub for).
    pub fn apply(&self, target: &Target) -> Target {
        let mut t = target.clone();
        if !self.repositories.is_empty() {
            t.repositories = self.repositories.clone();
        }
        if !self.permissions.is_empty() {
            t.permissions = self.permissions.clone();
        }
        t
    }
}

/// Why a request's scope is refused: 400 (malformed) or 403 (broader than the target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeError {
    Malformed(String),
    Broader(String),
}

fn level(l: &str) -> u8 {
    match l {
        "read" => 1,
        "write" => 2,
        "admin" => 3,
        _ => u8::MAX,
    }
}

/// Parse the query pairs and check them against `target`.
pub fn from_query(query: &[(String, String)], target: &Target) -> Result<Scope, ScopeError> {
    let mut scope = Scope::default();
    let mut seen = (false, false);
    for (key, value) in query {
        // parsed with the query's own names (Spelling::Key), so no message is rewritten
        let bad = |e: crate::config::ConfigError| ScopeError::Malformed(e.0);
        match key.as_str() {
            "repositories" if !seen.0 => {
                seen.0 = true;
                let owner = match &target.installation {
                    crate::config::InstallationRef::Owner(o)
                    | crate::config::InstallationRef::Repo { owner: o, .. } => Some(o.as_str()),
                    crate::config::InstallationRef::Id(_) => None,
                };
                scope.repositories =
                    parse_repositories(Spelling::Key, value.split(','), owner).map_err(bad)?;
                scope.repositories.sort();
            }
            "permissions" if !seen.1 => {
                seen.1 = true;
                // NAME:LEVEL in a URL (NAME=LEVEL would need escaping); both are accepted
                let pairs = value.replace(':', "=");
                scope.permissions = permission_pairs(Spelling::Key, &pairs)
                    .and_then(|p| parse_permissions(Spelling::Key, p))
                    .map_err(bad)?;
            }
            "repositories" | "permissions" => {
                return Err(ScopeError::Malformed(format!("'{key}' given twice")));
            }
            other => {
                return Err(ScopeError::Malformed(format!(
                    "unknown parameter '{}': expected repositories=A,B and/or \
                     permissions=NAME:LEVEL,…",
                    other.escape_debug()
                )));
            }
        }
    }
    within(&scope, target)?;
    Ok(scope)
}

/// Never broader than the target: every repository asked for is one of the target's (when
/// it names any), every permission at most the target's level (when it sets any).
fn within(scope: &Scope, target: &Target) -> Result<(), ScopeError> {
    if !target.repositories.is_empty() {
        let outside: Vec<&str> = scope
            .repositories
            .iter()
            .filter(|r| {
                !target
                    .repositories
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(r))
            })
            .map(String::as_str)
            .collect();
        if !outside.is_empty() {
            return Err(ScopeError::Broader(format!(
                "repositories {} are outside this socket's scope ({})",
                outside.join(","),
                target.repositories.join(",")
            )));
        }
    }
    if !target.permissions.is_empty() {
        for (name, want) in &scope.permissions {
            match target.permissions.get(name) {
                Some(have) if level(want) <= level(have) => {}
                Some(have) => {
                    return Err(ScopeError::Broader(format!(
                        "permission {name}:{want} is broader than this socket's {name}:{have}"
                    )));
                }
                None => {
                    return Err(ScopeError::Broader(format!(
                        "permission {name} is not in this socket's scope ({})",
                        target
                            .permissions
                            .iter()
                            .map(|(k, v)| format!("{k}:{v}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    )));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(repos: &[&str], perms: &[(&str, &str)]) -> Target {
        let text = "app_id = 1\nprivate_key_file = \"/k.pem\"\n[[target]]\nname = \"t\"\n\
                    installation_id = 1\noutput = \"/o/t.json\"\n";
        let mut t =
            crate::config::file::parse(text, std::path::Path::new("t.toml"), &Default::default())
                .unwrap()
                .targets
                .remove(0);
        t.repositories = repos.iter().map(|s| s.to_string()).collect();
        t.permissions = perms
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        t
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn narrowing_is_allowed() {
        let t = target(&["a", "b"], &[("contents", "write"), ("issues", "read")]);
        let s = from_query(
            &q(&[("repositories", "b"), ("permissions", "contents:read")]),
            &t,
        )
        .unwrap();
        assert_eq!(s.repositories, ["b"]);
        assert_eq!(s.permissions["contents"], "read");
        assert_eq!(s.describe(), "repositories=b permissions=contents:read");
        assert!(from_query(&[], &t).unwrap().is_default());
        // an unrestricted target allows any subset; GitHub checks it against the installation
        let open = target(&[], &[]);
        assert!(from_query(&q(&[("permissions", "issues:write")]), &open).is_ok());
    }

    #[test]
    fn widening_is_refused() {
        let t = target(&["a", "b"], &[("contents", "read")]);
        let broader = |pairs: &[(&str, &str)]| match from_query(&q(pairs), &t) {
            Err(ScopeError::Broader(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(broader(&[("repositories", "a,c")]).contains("repositories c"));
        assert!(broader(&[("permissions", "contents:write")]).contains("broader"));
        assert!(broader(&[("permissions", "issues:read")]).contains("not in"));
    }

    /// Malformed queries are refused, and the refusal names what the client of the socket
    /// wrote, a query parameter, never a flag.
    #[test]
    fn malformed_is_refused_in_the_querys_own_words() {
        let t = target(&[], &[]);
        for pairs in [
            &[("repo", "a")][..],
            &[("permissions", "contents")],
            &[("permissions", "contents:sudo")],
            &[("repositories", "a b")],
            &[("repositories", "a"), ("repositories", "b")],
        ] {
            let Err(ScopeError::Malformed(m)) = from_query(&q(pairs), &t) else {
                panic!("{pairs:?} accepted");
            };
            assert!(
                m.contains(&format!("'{}'", pairs[0].0)) || m.starts_with(pairs[0].0),
                "{pairs:?}: {m}"
            );
            assert!(!m.contains("--"), "{pairs:?}: {m}");
        }
    }

    proptest::proptest! {
        /// Whatever the query, the answer is a scope within the target's, or a refusal.
        #[test]
        fn never_broader_never_panics(
            repos in "[a-z,/ .%]{0,30}",
            perms in "[a-z_:=,]{0,40}",
        ) {
            let t = target(&["a", "b"], &[("contents", "write")]);
            if let Ok(s) = from_query(&q(&[("repositories", &repos), ("permissions", &perms)]), &t) {
                proptest::prop_assert!(s.repositories.iter().all(|r| r == "a" || r == "b"));
                proptest::prop_assert!(s.permissions.iter().all(|(k, v)| k == "contents" && v != "admin"));
            }
        }
    }
}
