//! The JSON shapes GitHub sends and accepts, reduced to the fields used here. Every text
//! field GitHub sends is cleaned as it is read ([`crate::sanitize`]): a login or repository
//! name with a newline or an ESC sequence never reaches a log line, STATUS or the file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sanitize::clean;
use crate::secret::Secret;

#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    #[serde(deserialize_with = "crate::sanitize::string")]
    pub login: String,
    #[serde(rename = "type", default, deserialize_with = "crate::sanitize::string")]
    pub kind: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AppInfo {
    pub id: u64,
    #[serde(default, deserialize_with = "crate::sanitize::string")]
    pub slug: String,
    #[serde(default, deserialize_with = "crate::sanitize::string")]
    pub name: String,
    #[serde(default, deserialize_with = "crate::sanitize::string")]
    pub client_id: String,
    pub owner: Option<Account>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Installation {
    pub id: u64,
    pub account: Option<Account>,
    #[serde(default, deserialize_with = "crate::sanitize::string")]
    pub repository_selection: String,
    #[serde(default)]
    pub permissions: BTreeMap<String, serde_json::Value>,
    pub suspended_at: Option<String>,
}

impl Installation {
    pub fn account_login(&self) -> &str {
        self.account.as_ref().map_or("", |a| a.login.as_str())
    }
}

/// Body of `POST /app/installations/{id}/access_tokens`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TokenRequest {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub permissions: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RepositoryRef {
    #[serde(deserialize_with = "crate::sanitize::string")]
    pub name: String,
}

/// A minted installation token.
#[derive(Debug, Clone, Deserialize)]
pub struct AccessToken {
    pub token: Secret,
    pub expires_at: String,
    /// `expires_at`, parsed and checked by the client (GitHub's clock).
    #[serde(skip)]
    pub expires: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    pub permissions: BTreeMap<String, serde_json::Value>,
    #[serde(default, deserialize_with = "crate::sanitize::string")]
    pub repository_selection: String,
    pub repositories: Option<Vec<RepositoryRef>>,
}

impl AccessToken {
    /// Permissions as `name → level` strings (GitHub sends strings; anything else is kept
    /// as its JSON text).
    pub fn permission_levels(&self) -> BTreeMap<String, String> {
        self.permissions
            .iter()
            .map(|(k, v)| {
                let level = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                (clean(k), clean(&level))
            })
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RepositoryList {
    #[serde(default)]
    pub total_count: u64,
    #[serde(default)]
    pub repositories: Vec<RepositoryRef>,
}
