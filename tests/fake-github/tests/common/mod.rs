//! Helpers the fake's own test files (`api.rs`, `binary.rs`) share: reading a JSON answer
//! from the fake's control endpoints.

use serde_json::Value;

/// `GET url` with `http`, the answer's body as JSON (panics on any failure).
pub async fn get_json(http: &reqwest::Client, url: String) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}
