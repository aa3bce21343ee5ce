//! GitHub's REST endpoints for Apps: `/app`, installation discovery, access tokens,
//! `/installation/repositories`, token revocation, and `/user` (refused to integrations).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, LINK};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware;
use axum::response::Response;
use axum::routing::{delete, get, post};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::config::{App, Installation};
use crate::layer::{JSON_CONTENT_TYPE, github_layer};
use crate::state::{MintedToken, Shared};
use crate::{control, jwt};

/// Generic documentation URL GitHub uses for authentication errors.
pub(crate) const DOCS_REST: &str = "https://docs.github.com/rest";
const DOCS_GET_INSTALLATION: &str =
    "https://docs.github.com/rest/apps/apps#get-an-installation-for-the-authenticated-app";
const DOCS_ACCESS_TOKENS: &str =
    "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app";
const DOCS_REPO_INSTALLATION: &str = "https://docs.github.com/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app";
const DOCS_ORG_INSTALLATION: &str = "https://docs.github.com/rest/apps/apps#get-an-organization-installation-for-the-authenticated-app";
const DOCS_USER_INSTALLATION: &str =
    "https://docs.github.com/rest/apps/apps#get-a-user-installation-for-the-authenticated-app";
const DOCS_GET_USER: &str = "https://docs.github.com/rest/users/users#get-the-authenticated-user";

const REPO_NOT_ACCESSIBLE: &str = "There is at least one repository that does not exist or is not accessible to the parent installation.";
const PERMISSIONS_NOT_GRANTED: &str =
    "The permissions requested are not granted to this installation.";

/// Fixed creation time reported for Apps and installations.
const CREATED_AT: &str = "2024-01-15T09:30:00Z";

/// The whole HTTP application: API endpoints, `/_fake/` control endpoints, GitHub's 404
/// for everything else, and the recording/fault middleware around all of it.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/app", get(get_app))
        .route("/app/installations", get(list_installations))
        .route("/app/installations/{id}", get(get_installation))
        .route(
            "/app/installations/{id}/access_tokens",
            post(create_access_token),
        )
        .route("/repos/{owner}/{repo}/installation", get(repo_installation))
        .route("/orgs/{org}/installation", get(org_installation))
        .route("/users/{user}/installation", get(user_installation))
        .route("/installation/repositories", get(installation_repositories))
        .route("/installation/token", delete(revoke_token))
        .route("/user", get(get_user))
        .merge(control::router())
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), github_layer))
        .with_state(shared)
}

// ---------------------------------------------------------------------------------------
// Response helpers

/// A JSON response with GitHub's `content-type`.
pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
    resp
}

/// GitHub's error body: `{"message", "documentation_url", "status"}`.
pub(crate) fn error_response(status: StatusCode, message: &str, docs: &str) -> Response {
    json_response(
        status,
        &json!({
            "message": message,
            "documentation_url": docs,
            "status": status.as_u16().to_string(),
        }),
    )
}

fn not_found_at(docs: &str) -> Response {
    error_response(StatusCode::NOT_FOUND, "Not Found", docs)
}

async fn not_found() -> Response {
    not_found_at(DOCS_REST)
}

/// RFC 3339 with `Z`, second precision: `2026-11-23T14:05:00Z`.
pub(crate) fn github_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

// ---------------------------------------------------------------------------------------
// Authentication

/// The credential after the scheme in `Authorization` (`Bearer x`, `token x`, any scheme).
fn credential(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    if value.is_empty() {
        return None;
    }
    let cred = value
        .split_once(char::is_whitespace)
        .map_or(value, |(_, rest)| rest.trim());
    Some(cred)
}

/// App (JWT) authentication: GitHub's 401s for a missing or invalid JWT.
#[allow(clippy::result_large_err)]
fn require_app<'a>(shared: &'a Shared, headers: &HeaderMap) -> Result<&'a App, Response> {
    let Some(token) = credential(headers) else {
        return Err(error_response(
            StatusCode::UNAUTHORIZED,
            "Requires authentication",
            DOCS_REST,
        ));
    };
    let apps: Vec<&App> = shared.apps().iter().map(|(a, _)| a).collect();
    match jwt::verify(token, &apps, shared.now().timestamp()) {
        Ok(app) => Ok(app),
        Err(message) => Err(error_response(StatusCode::UNAUTHORIZED, message, DOCS_REST)),
    }
}

/// Installation-token authentication: 401 "Bad credentials" for unknown, expired, revoked,
/// not-yet-replicated tokens and tokens of deleted installations.
#[allow(clippy::result_large_err)]
fn require_installation_token(
    shared: &Shared,
    headers: &HeaderMap,
) -> Result<MintedToken, Response> {
    let Some(token) = credential(headers) else {
        return Err(error_response(
            StatusCode::UNAUTHORIZED,
            "Requires authentication",
            DOCS_REST,
        ));
    };
    shared
        .check_token(token, true)
        .map_err(|_| error_response(StatusCode::UNAUTHORIZED, "Bad credentials", DOCS_REST))
}

// ---------------------------------------------------------------------------------------
// JSON shapes

fn account_id(inst: &Installation) -> u64 {
    1_000_000 + inst.id
}

fn account_json(base: &str, inst: &Installation) -> Value {
    let login = &inst.account;
    json!({
        "login": login,
        "id": account_id(inst),
        "node_id": format!("MDEyOk9yZ2FuaXphdGlvbj{}", account_id(inst)),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{}?v=4", account_id(inst)),
        "url": format!("{base}/users/{login}"),
        "html_url": format!("https://github.com/{login}"),
        "type": inst.account_type.as_str(),
        "site_admin": false,
    })
}

fn installation_json(base: &str, app: &App, inst: &Installation) -> Value {
    let html_url = match inst.account_type {
        crate::config::AccountType::Organization => format!(
            "https://github.com/organizations/{}/settings/installations/{}",
            inst.account, inst.id
        ),
        crate::config::AccountType::User => {
            format!("https://github.com/settings/installations/{}", inst.id)
        }
    };
    json!({
        "id": inst.id,
        "client_id": app.client_id,
        "account": account_json(base, inst),
        "repository_selection": inst.repository_selection,
        "access_tokens_url": format!("{base}/app/installations/{}/access_tokens", inst.id),
        "repositories_url": format!("{base}/installation/repositories"),
        "html_url": html_url,
        "app_id": app.id,
        "app_slug": app.slug,
        "target_id": account_id(inst),
        "target_type": inst.account_type.as_str(),
        "permissions": inst.permissions,
        "events": [],
        "created_at": CREATED_AT,
        "updated_at": CREATED_AT,
        "single_file_name": null,
        "has_multiple_single_files": false,
        "single_file_paths": [],
        "suspended_by": null,
        "suspended_at": null,
    })
}

fn repo_json(base: &str, inst: &Installation, index: usize) -> Value {
    let name = &inst.repositories[index];
    let full_name = inst.full_name(name);
    let id = inst.repository_id(index);
    json!({
        "id": id,
        "node_id": format!("R_kgDOFake{id}"),
        "name": name,
        "full_name": full_name,
        "private": true,
        "owner": account_json(base, inst),
        "html_url": format!("https://github.com/{full_name}"),
        "url": format!("{base}/repos/{full_name}"),
        "default_branch": "main",
    })
}

fn level(value: &str) -> Option<u8> {
    match value {
        "read" => Some(1),
        "write" => Some(2),
        "admin" => Some(3),
        _ => None,
    }
}

/// The App's own permissions: the highest level any installation was granted.
fn app_permissions(installations: &[Installation]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for inst in installations {
        for (k, v) in &inst.permissions {
            let better = out.get(k).is_none_or(|cur| level(v) > level(cur));
            if better {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Lookups

fn installations_of<'a>(shared: &'a Shared, app: &App) -> &'a [Installation] {
    shared
        .apps()
        .iter()
        .find(|(a, _)| a.id == app.id)
        .map_or(&[], |(_, insts)| insts.as_slice())
}

/// The live (not gone) installation `id` of `app`.
fn live_installation<'a>(shared: &'a Shared, app: &App, id: &str) -> Option<&'a Installation> {
    let id: u64 = id.parse().ok()?;
    installations_of(shared, app)
        .iter()
        .find(|i| i.id == id && !shared.is_installation_gone(i.id))
}

fn installation_by_id(shared: &Shared, id: u64) -> Option<(&App, &Installation)> {
    shared
        .apps()
        .iter()
        .find_map(|(a, insts)| insts.iter().find(|i| i.id == id).map(|i| (a, i)))
}

// ---------------------------------------------------------------------------------------
// Pagination (`per_page` default 30, max 100; `page` from 1) with a `Link` header.

struct Page {
    start: usize,
    end: usize,
    link: Option<String>,
}

fn paginate(base: &str, uri: &Uri, total: usize) -> Page {
    let mut per_page = 30usize;
    let mut page = 1usize;
    for pair in uri.query().unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "per_page" => per_page = v.parse().map_or(30, |n: usize| n.clamp(1, 100)),
            "page" => page = v.parse().map_or(1, |n: usize| n.max(1)),
            _ => {}
        }
    }
    let last = total.div_ceil(per_page).max(1);
    let start = (page - 1).saturating_mul(per_page).min(total);
    let end = start.saturating_add(per_page).min(total);
    let url = |p: usize| format!("<{base}{}?per_page={per_page}&page={p}>", uri.path());
    let mut rels = Vec::new();
    if page > 1 {
        rels.push(format!("{}; rel=\"prev\"", url((page - 1).min(last))));
    }
    if page < last {
        rels.push(format!("{}; rel=\"next\"", url(page + 1)));
        rels.push(format!("{}; rel=\"last\"", url(last)));
    }
    if page > 1 {
        rels.push(format!("{}; rel=\"first\"", url(1)));
    }
    let link = (!rels.is_empty()).then(|| rels.join(", "));
    Page { start, end, link }
}

fn with_link(mut resp: Response, link: Option<String>) -> Response {
    if let Some(link) = link.and_then(|l| HeaderValue::try_from(l).ok()) {
        resp.headers_mut().insert(LINK, link);
    }
    resp
}

// ---------------------------------------------------------------------------------------
// App (JWT) endpoints

async fn get_app(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let app = match require_app(&shared, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let installations = installations_of(&shared, app);
    let owner = installations.first();
    let owner_json = owner.map_or_else(
        || json!({"login": "fake-owner", "id": 1, "type": "Organization"}),
        |i| account_json(shared.base_url(), i),
    );
    json_response(
        StatusCode::OK,
        &json!({
            "id": app.id,
            "slug": app.slug,
            "node_id": format!("A_kwFake{}", app.id),
            "client_id": app.client_id,
            "owner": owner_json,
            "name": app.name,
            "description": "A GitHub App served by fake-github",
            "external_url": "https://example.com",
            "html_url": format!("https://github.com/apps/{}", app.slug),
            "created_at": CREATED_AT,
            "updated_at": CREATED_AT,
            "permissions": app_permissions(installations),
            "events": [],
            "installations_count": installations.len(),
        }),
    )
}

async fn list_installations(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let app = match require_app(&shared, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let live: Vec<&Installation> = installations_of(&shared, app)
        .iter()
        .filter(|i| !shared.is_installation_gone(i.id))
        .collect();
    let page = paginate(shared.base_url(), &uri, live.len());
    let items: Vec<Value> = live[page.start..page.end]
        .iter()
        .map(|i| installation_json(shared.base_url(), app, i))
        .collect();
    with_link(
        json_response(StatusCode::OK, &Value::Array(items)),
        page.link,
    )
}

async fn get_installation(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let app = match require_app(&shared, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    match live_installation(&shared, app, &id) {
        Some(inst) => json_response(
            StatusCode::OK,
            &installation_json(shared.base_url(), app, inst),
        ),
        None => not_found_at(DOCS_GET_INSTALLATION),
    }
}

/// Shared body of the three discovery endpoints.
fn discover(
    shared: &Shared,
    headers: &HeaderMap,
    docs: &str,
    matches: impl Fn(&Installation) -> bool,
) -> Response {
    let app = match require_app(shared, headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    installations_of(shared, app)
        .iter()
        .find(|i| !shared.is_installation_gone(i.id) && matches(i))
        .map_or_else(
            || not_found_at(docs),
            |inst| {
                json_response(
                    StatusCode::OK,
                    &installation_json(shared.base_url(), app, inst),
                )
            },
        )
}

async fn repo_installation(
    State(shared): State<Arc<Shared>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    discover(&shared, &headers, DOCS_REPO_INSTALLATION, |i| {
        i.account.eq_ignore_ascii_case(&owner)
            && i.repositories.iter().any(|r| r.eq_ignore_ascii_case(&repo))
    })
}

async fn org_installation(
    State(shared): State<Arc<Shared>>,
    Path(org): Path<String>,
    headers: HeaderMap,
) -> Response {
    discover(&shared, &headers, DOCS_ORG_INSTALLATION, |i| {
        i.account.eq_ignore_ascii_case(&org)
            && i.account_type == crate::config::AccountType::Organization
    })
}

async fn user_installation(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    discover(&shared, &headers, DOCS_USER_INSTALLATION, |i| {
        i.account.eq_ignore_ascii_case(&user)
    })
}

/// `POST /app/installations/{id}/access_tokens`.
async fn create_access_token(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let app = match require_app(&shared, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Some(inst) = live_installation(&shared, app, &id) else {
        return not_found_at(DOCS_ACCESS_TOKENS);
    };
    let request = match parse_token_request(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };

    // Repository scoping, by name and/or id; the result keeps the installation's order.
    let scoped = request.repositories.is_some() || request.repository_ids.is_some();
    let mut selected = vec![false; inst.repositories.len()];
    for name in request.repositories.iter().flatten() {
        match inst
            .repositories
            .iter()
            .position(|r| r.eq_ignore_ascii_case(name))
        {
            Some(i) => selected[i] = true,
            None => {
                return error_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    REPO_NOT_ACCESSIBLE,
                    DOCS_ACCESS_TOKENS,
                );
            }
        }
    }
    for rid in request.repository_ids.iter().flatten() {
        match (0..inst.repositories.len()).find(|&i| inst.repository_id(i) == *rid) {
            Some(i) => selected[i] = true,
            None => {
                return error_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    REPO_NOT_ACCESSIBLE,
                    DOCS_ACCESS_TOKENS,
                );
            }
        }
    }

    // Permissions: each requested one must be granted at that level or higher.
    let permissions = match &request.permissions {
        Some(requested) => {
            for (name, value) in requested {
                let granted = inst.permissions.get(name).and_then(|g| level(g));
                if granted.is_none_or(|g| level(value) > Some(g)) {
                    return error_response(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        PERMISSIONS_NOT_GRANTED,
                        DOCS_ACCESS_TOKENS,
                    );
                }
            }
            requested.clone()
        }
        None => inst.permissions.clone(),
    };

    let scoped_indices: Vec<usize> = (0..selected.len()).filter(|&i| selected[i]).collect();
    let scoped_names = scoped.then(|| {
        scoped_indices
            .iter()
            .map(|&i| inst.repositories[i].clone())
            .collect()
    });
    let minted = shared.mint(app.id, inst.id, permissions.clone(), scoped_names);

    let mut out = Map::new();
    out.insert("token".into(), json!(minted.token));
    out.insert("expires_at".into(), json!(github_time(minted.expires_at)));
    out.insert("permissions".into(), json!(permissions));
    out.insert(
        "repository_selection".into(),
        json!(if scoped {
            "selected"
        } else {
            inst.repository_selection.as_str()
        }),
    );
    if scoped {
        let repos: Vec<Value> = scoped_indices
            .iter()
            .map(|&i| repo_json(shared.base_url(), inst, i))
            .collect();
        out.insert("repositories".into(), Value::Array(repos));
    }
    json_response(StatusCode::CREATED, &Value::Object(out))
}

struct TokenRequest {
    repositories: Option<Vec<String>>,
    repository_ids: Option<Vec<u64>>,
    permissions: Option<BTreeMap<String, String>>,
}

/// Parses the optional access-token body with GitHub's 400/422 answers for bad input.
#[allow(clippy::result_large_err)]
fn parse_token_request(body: &[u8]) -> Result<TokenRequest, Response> {
    let mut request = TokenRequest {
        repositories: None,
        repository_ids: None,
        permissions: None,
    };
    if body.trim_ascii().is_empty() {
        return Ok(request);
    }
    let problems = || {
        error_response(
            StatusCode::BAD_REQUEST,
            "Problems parsing JSON",
            DOCS_ACCESS_TOKENS,
        )
    };
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Err(problems());
    };
    let Value::Object(map) = value else {
        return Err(problems());
    };
    request.repositories = list_field(&map, "repositories", "strings", |x| {
        x.as_str().map(str::to_owned)
    })?;
    request.repository_ids = list_field(&map, "repository_ids", "integers", Value::as_u64)?;
    if let Some(v) = map.get("permissions").filter(|v| !v.is_null()) {
        let obj = v.as_object().ok_or_else(|| {
            invalid(format!(
                "For 'properties/permissions', {v} is not an object."
            ))
        })?;
        let mut perms = BTreeMap::new();
        for (name, value) in obj {
            match value.as_str() {
                Some(s @ ("read" | "write" | "admin")) => {
                    perms.insert(name.clone(), s.to_owned());
                }
                _ => {
                    return Err(invalid(format!(
                        "For 'properties/{name}', {value} is not one of [\"read\", \"write\"]."
                    )));
                }
            }
        }
        if !perms.is_empty() {
            request.permissions = Some(perms);
        }
    }
    Ok(request)
}

/// GitHub's 422 for a token request body it parsed but cannot use, with `detail`.
fn invalid(detail: String) -> Response {
    error_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &format!("Invalid request.\n\n{detail}"),
        DOCS_ACCESS_TOKENS,
    )
}

/// The array `field` of a token request body, each element read by `item`: `None` when it
/// is absent, null or empty, GitHub's 422 naming the field when it is not an array of
/// `kind` (what `item` accepts, e.g. "strings").
#[allow(clippy::result_large_err)]
fn list_field<T>(
    map: &Map<String, Value>,
    field: &str,
    kind: &str,
    item: impl Fn(&Value) -> Option<T>,
) -> Result<Option<Vec<T>>, Response> {
    let Some(v) = map.get(field).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let list = v
        .as_array()
        .and_then(|a| a.iter().map(&item).collect::<Option<Vec<_>>>())
        .ok_or_else(|| {
            invalid(format!(
                "For 'properties/{field}', {v} is not an array of {kind}."
            ))
        })?;
    Ok(Some(list).filter(|l| !l.is_empty()))
}

// ---------------------------------------------------------------------------------------
// Installation-token endpoints

async fn installation_repositories(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let token = match require_installation_token(&shared, &headers) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Some((_, inst)) = installation_by_id(&shared, token.installation_id) else {
        return error_response(StatusCode::UNAUTHORIZED, "Bad credentials", DOCS_REST);
    };
    let indices: Vec<usize> = (0..inst.repositories.len())
        .filter(|&i| {
            token
                .repositories
                .as_ref()
                .is_none_or(|names| names.contains(&inst.repositories[i]))
        })
        .collect();
    let page = paginate(shared.base_url(), &uri, indices.len());
    let repos: Vec<Value> = indices[page.start..page.end]
        .iter()
        .map(|&i| repo_json(shared.base_url(), inst, i))
        .collect();
    let selection = if token.repositories.is_some() {
        "selected"
    } else {
        inst.repository_selection.as_str()
    };
    with_link(
        json_response(
            StatusCode::OK,
            &json!({
                "total_count": indices.len(),
                "repository_selection": selection,
                "repositories": repos,
            }),
        ),
        page.link,
    )
}

/// `DELETE /installation/token`: 204, after which the token is refused.
async fn revoke_token(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let token = match require_installation_token(&shared, &headers) {
        Ok(t) => t,
        Err(r) => return r,
    };
    shared.revoke(&token.token);
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

/// `GET /user`: an integration is not a user.
async fn get_user(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some(cred) = credential(&headers) else {
        return error_response(
            StatusCode::UNAUTHORIZED,
            "Requires authentication",
            DOCS_REST,
        );
    };
    let forbidden = || {
        error_response(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
            DOCS_GET_USER,
        )
    };
    if shared.check_token(cred, true).is_ok() {
        return forbidden();
    }
    if cred.starts_with("ghs_") || cred.split('.').count() != 3 {
        return error_response(StatusCode::UNAUTHORIZED, "Bad credentials", DOCS_REST);
    }
    match require_app(&shared, &headers) {
        Ok(_) => forbidden(),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination_links() {
        let uri: Uri = "/installation/repositories?per_page=2&page=2"
            .parse()
            .unwrap();
        let p = paginate("http://h", &uri, 5);
        assert_eq!((p.start, p.end), (2, 4));
        let link = p.link.unwrap();
        assert!(
            link.contains("<http://h/installation/repositories?per_page=2&page=3>; rel=\"next\"")
        );
        assert!(link.contains("page=3>; rel=\"last\""));
        assert!(link.contains("page=1>; rel=\"prev\""));
        let uri: Uri = "/installation/repositories".parse().unwrap();
        let p = paginate("http://h", &uri, 3);
        assert_eq!((p.start, p.end, p.link), (0, 3, None));
        let uri: Uri = "/x?page=9".parse().unwrap();
        let p = paginate("http://h", &uri, 3);
        assert_eq!((p.start, p.end), (3, 3));
    }

    #[test]
    fn github_time_is_second_precision_z() {
        let t = DateTime::from_timestamp(1_795_442_700, 123_000_000).unwrap();
        assert_eq!(github_time(t), "2026-11-23T14:05:00Z");
    }

    #[test]
    fn token_request_validation() {
        assert!(parse_token_request(b"").unwrap().permissions.is_none());
        assert_eq!(
            parse_token_request(b"{nope").err().unwrap().status(),
            StatusCode::BAD_REQUEST
        );
        let bad = parse_token_request(br#"{"permissions":{"contents":"writ"}}"#)
            .err()
            .unwrap();
        assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let bad = parse_token_request(br#"{"repositories":"widgets"}"#)
            .err()
            .unwrap();
        assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let ok = parse_token_request(
            br#"{"repositories":["a"],"repository_ids":[1],"permissions":{"contents":"read"}}"#,
        )
        .unwrap();
        assert_eq!(ok.repositories, Some(vec!["a".to_owned()]));
        assert_eq!(ok.repository_ids, Some(vec![1]));
        assert_eq!(ok.permissions.unwrap()["contents"], "read");
    }
}
