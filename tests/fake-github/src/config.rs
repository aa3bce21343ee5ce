//! What the fake serves: GitHub Apps, their installations, and the standard test setup.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::key::TestKey;

/// A GitHub App registered with the fake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    /// Numeric App id (JWT `iss` may be this, as a number or a string).
    pub id: u64,
    /// Client id such as `Iv23li…` (also accepted as JWT `iss`, as GitHub does).
    pub client_id: String,
    /// URL-friendly name, e.g. `token-refresher-test`.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// The App's private key; the fake verifies JWTs against its public half.
    pub key: TestKey,
}

impl App {
    /// A JWT for this App, valid now by the real clock: `iat` = now − 60 s,
    /// `exp` = now + 540 s, `iss` = the App id as a string (GitHub's recommended shape).
    #[must_use]
    pub fn jwt(&self) -> String {
        let now = chrono::Utc::now().timestamp();
        self.jwt_with(serde_json::json!({
            "iat": now - 60,
            "exp": now + 540,
            "iss": self.id.to_string(),
        }))
    }

    /// Signs arbitrary `claims` with this App's key (RS256).
    #[must_use]
    pub fn jwt_with(&self, claims: serde_json::Value) -> String {
        self.key.sign_jwt(&claims)
    }
}

/// Whether an installation's account is an organisation or a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AccountType {
    /// An organisation (`/orgs/{org}/installation` finds it).
    Organization,
    /// A personal account (`/orgs/{org}/installation` answers 404 for it).
    User,
}

impl AccountType {
    /// GitHub's spelling in `account.type`: `"Organization"` or `"User"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AccountType::Organization => "Organization",
            AccountType::User => "User",
        }
    }
}

/// One installation of an App on an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installation {
    /// Installation id.
    pub id: u64,
    /// Account login, e.g. `acme`.
    pub account: String,
    /// Organisation or user.
    pub account_type: AccountType,
    /// Repository names (without the owner) the installation can reach.
    pub repositories: Vec<String>,
    /// `"all"` or `"selected"`.
    pub repository_selection: String,
    /// Granted permissions, e.g. `contents` → `write`, `metadata` → `read`.
    pub permissions: BTreeMap<String, String>,
}

impl Installation {
    /// The fake's numeric id for `repositories[index]`: stable and unique across installations.
    #[must_use]
    pub fn repository_id(&self, index: usize) -> u64 {
        self.id * 100_000 + index as u64 + 1
    }

    /// `account/name` for one of this installation's repositories.
    #[must_use]
    pub fn full_name(&self, repo: &str) -> String {
        format!("{}/{}", self.account, repo)
    }
}

/// Everything a [`crate::FakeGithub`] starts with.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// Apps and their installations.
    pub apps: Vec<(App, Vec<Installation>)>,
    /// Lifetime of minted installation tokens (GitHub: one hour).
    pub token_lifetime: Duration,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig::standard()
    }
}

impl FakeConfig {
    /// App 1234 (`Iv23liFAKE0000000000`, `token-refresher-test`, key [`TestKey::shared`]) with
    /// installation 100 on organisation `acme` (repositories `widgets`, `gadgets`, `infra`,
    /// selection `selected`) and installation 200 on user `octocat` (`dotfiles`, selection
    /// `all`), both granted contents=write, metadata=read, pull_requests=write, issues=write.
    #[must_use]
    pub fn standard() -> FakeConfig {
        FakeConfig::standard_with_key(TestKey::shared().clone())
    }

    /// [`FakeConfig::standard`] but with the App using `key`.
    #[must_use]
    pub fn standard_with_key(key: TestKey) -> FakeConfig {
        let permissions: BTreeMap<String, String> = [
            ("contents", "write"),
            ("metadata", "read"),
            ("pull_requests", "write"),
            ("issues", "write"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let app = App {
            id: 1234,
            client_id: "Iv23liFAKE0000000000".to_owned(),
            slug: "token-refresher-test".to_owned(),
            name: "Token Refresher Test".to_owned(),
            key,
        };
        let acme = Installation {
            id: 100,
            account: "acme".to_owned(),
            account_type: AccountType::Organization,
            repositories: vec!["widgets".into(), "gadgets".into(), "infra".into()],
            repository_selection: "selected".to_owned(),
            permissions: permissions.clone(),
        };
        let octocat = Installation {
            id: 200,
            account: "octocat".to_owned(),
            account_type: AccountType::User,
            repositories: vec!["dotfiles".into()],
            repository_selection: "all".to_owned(),
            permissions,
        };
        FakeConfig {
            apps: vec![(app, vec![acme, octocat])],
            token_lifetime: Duration::from_secs(3600),
        }
    }

    /// The first App (the standard config's only one).
    ///
    /// # Panics
    /// If the config has no App.
    #[must_use]
    pub fn app(&self) -> &App {
        &self
            .apps
            .first()
            .expect("FakeConfig has at least one App")
            .0
    }
}
