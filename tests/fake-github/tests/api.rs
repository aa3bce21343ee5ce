//! End-to-end tests of the fake over real HTTP on 127.0.0.1: JWT rules, discovery,
//! token minting and scoping, token expiry, faults, clock offset and control endpoints.

mod common;

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use fake_github::{FakeConfig, FakeGithub, Fault, FaultKind, Route, TestKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use common::get_json;

const UNDECODABLE: &str = "A JSON web token could not be decoded";
const BAD_IAT: &str =
    "'Issued at' claim ('iat') must be an Integer representing a time in the past";
const EXP_TOO_FAR: &str = "'Expiration time' claim ('exp') is too far in the future";
const BAD_EXP: &str = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent("fake-github-tests/1.0")
        .no_proxy()
        .build()
        .unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn sign(pem: &str, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
}

fn jwt() -> String {
    sign(
        &TestKey::shared().pkcs1_pem,
        &json!({"iat": now() - 60, "exp": now() + 540, "iss": "1234"}),
    )
}

async fn get(url: String, auth: &str) -> reqwest::Response {
    client()
        .get(url)
        .header("authorization", auth)
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
        .send()
        .await
        .unwrap()
}

async fn status_and_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn mint(github: &FakeGithub, installation: u64, body: Option<Value>) -> (u16, Value) {
    let mut req = client()
        .post(format!(
            "{}/app/installations/{installation}/access_tokens",
            github.url()
        ))
        .bearer_auth(jwt());
    if let Some(body) = body {
        req = req.json(&body);
    }
    status_and_json(req.send().await.unwrap()).await
}

#[tokio::test]
async fn jwt_from_pkcs1_and_pkcs8_pem_is_accepted() {
    let github = FakeGithub::start(FakeConfig::standard()).await;
    let key = TestKey::shared();
    for pem in [&key.pkcs1_pem, &key.pkcs8_pem] {
        let token = sign(
            pem,
            &json!({"iat": now() - 60, "exp": now() + 540, "iss": "1234"}),
        );
        let resp = get(format!("{}/app", github.url()), &format!("Bearer {token}")).await;
        assert_eq!(resp.status(), 200);
        let headers = resp.headers().clone();
        assert_eq!(headers["content-type"], "application/json; charset=utf-8");
        assert!(headers.contains_key("x-github-request-id"));
        assert!(headers["date"].to_str().unwrap().ends_with(" GMT"));
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["id"], 1234);
        assert_eq!(body["slug"], "token-refresher-test");
        assert_eq!(body["client_id"], "Iv23liFAKE0000000000");
        assert_eq!(body["name"], "Token Refresher Test");
        assert_eq!(body["owner"]["login"], "acme");
        assert_eq!(body["permissions"]["contents"], "write");
    }
    // iss as a number is accepted too.
    let token = sign(
        &key.pkcs8_pem,
        &json!({"iat": now() - 60, "exp": now() + 540, "iss": 1234}),
    );
    let resp = get(format!("{}/app", github.url()), &format!("Bearer {token}")).await;
    assert_eq!(resp.status(), 200);
    // The request is recorded with lowercased header names.
    let recorded = github.requests_to("GET", "/app");
    assert_eq!(recorded.len(), 3);
    assert_eq!(
        recorded[0].header("user-agent"),
        Some("fake-github-tests/1.0")
    );
    assert_eq!(
        recorded[0].header("Accept"),
        Some("application/vnd.github+json")
    );
    assert_eq!(
        recorded[0].header("x-github-api-version"),
        Some("2022-11-28")
    );
    assert!(
        recorded[0]
            .headers
            .iter()
            .all(|(k, _)| *k == k.to_lowercase())
    );
}

#[tokio::test]
async fn client_id_as_iss_is_accepted() {
    let github = FakeGithub::start(FakeConfig::standard()).await;
    let token = sign(
        &TestKey::shared().pkcs1_pem,
        &json!({"iat": now() - 60, "exp": now() + 540, "iss": "Iv23liFAKE0000000000"}),
    );
    let resp = get(
        format!("{}/app/installations/100", github.url()),
        &format!("Bearer {token}"),
    )
    .await;
    let (status, body) = status_and_json(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], 100);
    assert_eq!(body["account"]["login"], "acme");
    assert_eq!(body["account"]["type"], "Organization");
    assert_eq!(body["app_id"], 1234);
}

#[tokio::test]
async fn bad_jwts_get_githubs_messages() {
    let github = FakeGithub::start(FakeConfig::standard()).await;
    let url = format!("{}/app", github.url());
    let shared = &TestKey::shared().pkcs1_pem;
    let other = TestKey::generate();
    let n = now();
    let cases = [
        (
            sign(
                &other.pkcs1_pem,
                &json!({"iat": n - 60, "exp": n + 540, "iss": "1234"}),
            ),
            UNDECODABLE,
        ),
        (
            sign(
                shared,
                &json!({"iat": n - 60, "exp": n + 540, "iss": "4321"}),
            ),
            UNDECODABLE,
        ),
        ("not-a-jwt".to_owned(), UNDECODABLE),
        (
            sign(
                shared,
                &json!({"iat": n + 30, "exp": n + 540, "iss": "1234"}),
            ),
            BAD_IAT,
        ),
        (
            sign(
                shared,
                &json!({"iat": "yesterday", "exp": n + 540, "iss": "1234"}),
            ),
            BAD_IAT,
        ),
        (
            sign(
                shared,
                &json!({"iat": n - 60, "exp": n + 541, "iss": "1234"}),
            ),
            EXP_TOO_FAR,
        ),
        (
            sign(
                shared,
                &json!({"iat": n - 700, "exp": n - 5, "iss": "1234"}),
            ),
            BAD_EXP,
        ),
        (
            sign(shared, &json!({"iat": n - 60, "iss": "1234"})),
            BAD_EXP,
        ),
    ];
    for (token, message) in cases {
        let (status, body) =
            status_and_json(get(url.clone(), &format!("Bearer {token}")).await).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["message"], message);
        assert_eq!(body["documentation_url"], "https://docs.github.com/rest");
        assert_eq!(body["status"], "401");
    }
    // No Authorization at all.
    let resp = client().get(url.clone()).send().await.unwrap();
    let (status, body) = status_and_json(resp).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("Requires authentication"))
    );
    // No User-Agent: GitHub's plain-text 403.
    let bare = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = bare.get(url).bearer_auth(jwt()).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().starts_with(
        "Request forbidden by administrative rules. Please make sure your request has a User-Agent header"
    ));
}

#[tokio::test]
async fn installation_discovery() {
    let github = FakeGithub::start(FakeConfig::standard()).await;
    let auth = format!("Bearer {}", jwt());
    let cases = [
        ("/repos/acme/widgets/installation", 200, Some(100)),
        ("/repos/ACME/Gadgets/installation", 200, Some(100)),
        ("/repos/acme/nope/installation", 404, None),
        ("/repos/octocat/dotfiles/installation", 200, Some(200)),
        ("/orgs/acme/installation", 200, Some(100)),
        ("/orgs/octocat/installation", 404, None),
        ("/users/octocat/installation", 200, Some(200)),
        ("/users/acme/installation", 200, Some(100)),
        ("/users/nobody/installation", 404, None),
        ("/app/installations/200", 200, Some(200)),
        ("/app/installations/999", 404, None),
        ("/no/such/endpoint", 404, None),
    ];
    for (path, want_status, want_id) in cases {
        let (status, body) =
            status_and_json(get(format!("{}{path}", github.url()), &auth).await).await;
        assert_eq!(status, want_status, "{path}: {body}");
        match want_id {
            Some(id) => assert_eq!(body["id"], id, "{path}"),
            None => assert_eq!(body["message"], "Not Found", "{path}"),
        }
    }
    let (status, body) = status_and_json(
        get(
            format!("{}/users/octocat/installation", github.url()),
            &auth,
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["account"]["type"], "User");
    assert_eq!(body["repository_selection"], "all");
    let (_, list) =
        status_and_json(get(format!("{}/app/installations", github.url()), &auth).await).await;
    assert_eq!(list.as_array().unwrap().len(), 2);

    github.set_installation_gone(100, true);
    for path in [
        "/repos/acme/widgets/installation",
        "/orgs/acme/installation",
        "/app/installations/100",
    ] {
        let resp = get(format!("{}{path}", github.url()), &auth).await;
        assert_eq!(resp.status(), 404, "{path}");
    }
    assert_eq!(mint(&github, 100, None).await.0, 404);
    github.set_installation_gone(100, false);
    assert_eq!(mint(&github, 100, None).await.0, 201);
}

#[tokio::test]
async fn minting_and_scoping() {
    let github = FakeGithub::start(FakeConfig::standard()).await;
    let before = github.now().timestamp();
    let (status, body) = mint(&github, 100, None).await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap();
    assert!(token.starts_with("ghs_") && token.len() == 40, "{token}");
    let expires_at = body["expires_at"].as_str().unwrap();
    assert!(
        expires_at.ends_with('Z') && expires_at.len() == 20,
        "{expires_at}"
    );
    let exp = chrono::DateTime::parse_from_rfc3339(expires_at)
        .unwrap()
        .timestamp();
    assert!(
        (before + 3600..=before + 3602).contains(&exp),
        "{exp} vs {before}"
    );
    assert_eq!(body["repository_selection"], "selected");
    assert_eq!(body["permissions"]["pull_requests"], "write");
    assert!(body.get("repositories").is_none());
    assert!(github.is_token_valid(token));
    assert!(!github.is_token_valid("ghs_unknown"));
    assert_eq!(github.mint_count(), 1);

    let (status, body) = mint(
        &github,
        100,
        Some(json!({"repositories": ["widgets", "infra"], "permissions": {"contents": "read"}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["permissions"], json!({"contents": "read"}));
    let names: Vec<&str> = body["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["widgets", "infra"]);
    assert_eq!(body["repositories"][0]["full_name"], "acme/widgets");
    let widgets_id = body["repositories"][0]["id"].as_u64().unwrap();

    let (status, body) = mint(&github, 100, Some(json!({"repository_ids": [widgets_id]}))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["repositories"][0]["name"], "widgets");

    let (status, body) = mint(&github, 200, Some(json!({}))).await;
    assert_eq!(
        (status, body["repository_selection"].as_str()),
        (201, Some("all"))
    );

    let errors = [
        (
            json!({"repositories": ["widgets", "secret"]}),
            422,
            "There is at least one repository that does not exist or is not accessible to the parent installation.",
        ),
        (
            json!({"repository_ids": [42]}),
            422,
            "There is at least one repository that does not exist or is not accessible to the parent installation.",
        ),
        (
            json!({"permissions": {"metadata": "write"}}),
            422,
            "The permissions requested are not granted to this installation.",
        ),
        (
            json!({"permissions": {"administration": "read"}}),
            422,
            "The permissions requested are not granted to this installation.",
        ),
    ];
    for (request, want_status, message) in errors {
        let (status, body) = mint(&github, 100, Some(request.clone())).await;
        assert_eq!(status, want_status, "{request}: {body}");
        assert_eq!(body["message"], message, "{request}");
    }
    let (status, _) = mint(
        &github,
        100,
        Some(json!({"permissions": {"contents": "sudo"}})),
    )
    .await;
    assert_eq!(status, 422);
    let (status, body) = mint(&github, 999, None).await;
    assert_eq!((status, body["message"].as_str()), (404, Some("Not Found")));
    assert_eq!(github.mint_count(), 4);

    let recorded = github.requests_to("POST", "/app/installations/100/access_tokens");
    assert_eq!(
        recorded[1].json().unwrap()["repositories"],
        json!(["widgets", "infra"])
    );
}

#[tokio::test]
async fn token_works_until_it_expires() {
    let github = FakeGithub::start(FakeConfig::standard()).await;
    github.set_token_lifetime(Duration::from_secs(1));
    let (status, body) = mint(&github, 100, Some(json!({"repositories": ["gadgets"]}))).await;
    assert_eq!(status, 201);
    let token = body["token"].as_str().unwrap().to_owned();
    let url = format!("{}/installation/repositories", github.url());
    for auth in [format!("token {token}"), format!("Bearer {token}")] {
        let (status, body) = status_and_json(get(url.clone(), &auth).await).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["total_count"], 1);
        assert_eq!(body["repository_selection"], "selected");
        assert_eq!(body["repositories"][0]["full_name"], "acme/gadgets");
    }
    // An installation token is not a user.
    let (status, body) =
        status_and_json(get(format!("{}/user", github.url()), &format!("token {token}")).await)
            .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (403, Some("Resource not accessible by integration"))
    );
    // Nor an App JWT.
    let (status, body) =
        status_and_json(get(format!("{}/app", github.url()), &format!("token {token}")).await)
            .await;
    assert_eq!((status, body["message"].as_str()), (401, Some(UNDECODABLE)));

    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let resp = get(url.clone(), &format!("token {token}")).await;
        if resp.status() == 401 {
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["message"], "Bad credentials");
            break;
        }
        assert!(Instant::now() < deadline, "token never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!github.is_token_valid(&token));

    // An unscoped token of the user installation sees its whole selection.
    github.set_token_lifetime(Duration::from_secs(3600));
    let (_, body) = mint(&github, 200, None).await;
    let token = body["token"].as_str().unwrap();
    let (status, body) = status_and_json(get(url.clone(), &format!("token {token}")).await).await;
    assert_eq!(status, 200);
    assert_eq!(body["total_count"], 1);
    assert_eq!(body["repository_selection"], "all");
    assert_eq!(body["repositories"][0]["full_name"], "octocat/dotfiles");
    // Revocation.
    let resp = client()
        .delete(format!("{}/installation/token", github.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        get(url.clone(), &format!("token {token}")).await.status(),
        401
    );
    assert!(!github.is_token_valid(token));
    // Unknown token, and a token of a deleted installation.
    assert_eq!(
        get(
            url.clone(),
            "token ghs_000000000000000000000000000000000000"
        )
        .await
        .status(),
        401
    );
    let (_, body) = mint(&github, 100, None).await;
    let token = body["token"].as_str().unwrap();
    github.set_installation_gone(100, true);
    assert_eq!(
        get(url.clone(), &format!("token {token}")).await.status(),
        401
    );
}

#[tokio::test]
async fn repositories_are_paginated() {
    let github = FakeGithub::start(FakeConfig::standard()).await;
    let (_, body) = mint(&github, 100, None).await;
    let token = body["token"].as_str().unwrap();
    let resp = get(
        format!("{}/installation/repositories?per_page=2", github.url()),
        &format!("token {token}"),
    )
    .await;
    let link = resp.headers()["link"].to_str().unwrap().to_owned();
    assert!(link.contains("page=2>; rel=\"next\""), "{link}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["total_count"], 3);
    assert_eq!(body["repositories"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn activation_delay_answers_bad_credentials_at_first() {
    let github = FakeGithub::start(FakeConfig::standard()).await;
    github.set_token_activation_delay(Duration::from_millis(800));
    let (_, body) = mint(&github, 100, None).await;
    let token = body["token"].as_str().unwrap();
    let url = format!("{}/installation/repositories", github.url());
    assert_eq!(
        get(url.clone(), &format!("token {token}")).await.status(),
        401
    );
    assert!(github.is_token_valid(token));
    assert!(!github.is_token_active(token));
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(get(url, &format!("token {token}")).await.status(), 200);
    assert!(github.is_token_active(token));
}

#[tokio::test]
async fn clock_offset_shifts_date_and_jwt_checks() {
    let github = FakeGithub::start(FakeConfig::standard()).await;
    let date_of = |resp: &reqwest::Response| {
        let date = resp.headers()["date"].to_str().unwrap().to_owned();
        chrono::DateTime::parse_from_rfc2822(&date.replace("GMT", "+0000"))
            .unwrap()
            .timestamp()
    };
    let resp = get(
        format!("{}/app", github.url()),
        &format!("Bearer {}", jwt()),
    )
    .await;
    assert!((date_of(&resp) - now()).abs() <= 2);

    github.set_clock_offset(86_400);
    let resp = get(
        format!("{}/app", github.url()),
        &format!("Bearer {}", jwt()),
    )
    .await;
    assert!((date_of(&resp) - now() - 86_400).abs() <= 2);
    // A JWT made by the real clock has expired by the fake's.
    let (status, body) = status_and_json(resp).await;
    assert_eq!((status, body["message"].as_str()), (401, Some(BAD_EXP)));
    // Expiry times follow the fake clock.
    let token = sign(
        &TestKey::shared().pkcs1_pem,
        &json!({"iat": now() + 86_400 - 60, "exp": now() + 86_400 + 540, "iss": "1234"}),
    );
    let resp = client()
        .post(format!(
            "{}/app/installations/100/access_tokens",
            github.url()
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(resp).await;
    assert_eq!(status, 201, "{body}");
    let exp = chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    assert!((exp.timestamp() - (now() + 86_400 + 3600)).abs() <= 2);

    // The handle's own JWT follows the fake clock.
    let resp = get(
        format!("{}/app", github.url()),
        &format!("Bearer {}", github.app_jwt()),
    )
    .await;
    assert_eq!(resp.status(), 200);

    // Behind: the real clock's iat is in the fake's future.
    github.set_clock_offset(-120);
    let (status, body) = status_and_json(
        get(
            format!("{}/app", github.url()),
            &format!("Bearer {}", jwt()),
        )
        .await,
    )
    .await;
    assert_eq!((status, body["message"].as_str()), (401, Some(BAD_IAT)));
}

/// Pushes `kind` for `times` requests on the access-token route and checks each of those
/// requests fails as `check` expects, then that the next one is served normally.
async fn fault_then_recovery<F, Fut>(kind: FaultKind, times: usize, check: F)
where
    F: Fn(Result<reqwest::Response, reqwest::Error>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let github = FakeGithub::start(FakeConfig::standard()).await;
    // A fault on another route must not be consumed by access-token requests.
    github.push_fault(Fault::once(
        Route::InstallationRepositories,
        FaultKind::NonJson,
    ));
    github.push_fault(Fault::new(Route::AccessTokens, kind.clone(), times));
    let http = reqwest::Client::builder()
        .user_agent("fake-github-tests/1.0")
        .no_proxy()
        .timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let url = format!("{}/app/installations/100/access_tokens", github.url());
    for _ in 0..times {
        check(http.post(&url).bearer_auth(jwt()).send().await).await;
    }
    let resp = http.post(&url).bearer_auth(jwt()).send().await.unwrap();
    assert_eq!(resp.status(), 201, "{kind:?}: service did not resume");
    let body: Value = resp.json().await.unwrap();
    assert!(body["token"].as_str().unwrap().starts_with("ghs_"));
    assert_eq!(github.pending_faults().len(), 1, "{kind:?}");
    assert_eq!(
        github
            .requests_to("POST", "/app/installations/100/access_tokens")
            .len(),
        times + 1
    );
}

#[tokio::test]
async fn fault_status_with_headers() {
    fault_then_recovery(
        FaultKind::status_with_headers(
            429,
            r#"{"message":"You have exceeded a secondary rate limit."}"#,
            &[("retry-after", "7")],
        ),
        2,
        |r| async move {
            let resp = r.unwrap();
            assert_eq!(resp.status(), 429);
            assert_eq!(resp.headers()["retry-after"], "7");
            assert!(resp.headers().contains_key("date"));
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["message"], "You have exceeded a secondary rate limit.");
        },
    )
    .await;
    fault_then_recovery(
        FaultKind::status_with_headers(
            403,
            r#"{"message":"API rate limit exceeded"}"#,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1700000000"),
            ],
        ),
        1,
        |r| async move {
            let resp = r.unwrap();
            assert_eq!(resp.status(), 403);
            assert_eq!(resp.headers()["x-ratelimit-remaining"], "0");
            assert_eq!(resp.headers()["x-ratelimit-reset"], "1700000000");
        },
    )
    .await;
}

#[tokio::test]
async fn fault_delay() {
    let github = FakeGithub::start(FakeConfig::standard()).await;
    github.push_fault(Fault::new(
        Route::App,
        FaultKind::Delay(Duration::from_millis(400)),
        2,
    ));
    for expect_slow in [true, true, false] {
        let started = Instant::now();
        let resp = get(
            format!("{}/app", github.url()),
            &format!("Bearer {}", jwt()),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let slow = started.elapsed() >= Duration::from_millis(400);
        assert_eq!(slow, expect_slow, "{:?}", started.elapsed());
    }
}

#[tokio::test]
async fn fault_hang() {
    fault_then_recovery(FaultKind::Hang, 2, |r| async move {
        let err = r.unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn fault_drop_connection() {
    fault_then_recovery(FaultKind::DropConnection, 2, |r| async move {
        assert!(r.is_err(), "{r:?}");
    })
    .await;
}

#[tokio::test]
async fn fault_truncated_body() {
    fault_then_recovery(FaultKind::TruncatedBody, 2, |r| async move {
        // Headers arrive (200); reading the body fails.
        let resp = r.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.bytes().await.is_err());
    })
    .await;
}

#[tokio::test]
async fn fault_non_json() {
    fault_then_recovery(FaultKind::NonJson, 3, |r| async move {
        let resp = r.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "<html>oops</html>");
    })
    .await;
}

#[tokio::test]
async fn fault_missing_field() {
    fault_then_recovery(FaultKind::missing_field("expires_at"), 1, |r| async move {
        let body: Value = r.unwrap().json().await.unwrap();
        assert!(body.get("expires_at").is_none());
        assert!(body["token"].as_str().unwrap().starts_with("ghs_"));
    })
    .await;
    fault_then_recovery(FaultKind::missing_field("token"), 2, |r| async move {
        let body: Value = r.unwrap().json().await.unwrap();
        assert!(body.get("token").is_none());
        assert!(body.get("expires_at").is_some());
    })
    .await;
}

#[tokio::test]
async fn fault_oversized() {
    fault_then_recovery(FaultKind::Oversized(3 * 1024 * 1024), 1, |r| async move {
        let resp = r.unwrap();
        assert_eq!(resp.content_length(), Some(3 * 1024 * 1024));
        let bytes = resp.bytes().await.unwrap();
        assert_eq!(bytes.len(), 3 * 1024 * 1024);
        // Still the real answer, only padded: a client must cap the size itself.
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(body["token"].as_str().unwrap().starts_with("ghs_"));
    })
    .await;
}

#[tokio::test]
async fn any_route_faults_hit_every_endpoint_and_clear_works() {
    let github = FakeGithub::start(FakeConfig::standard()).await;
    github.push_fault(Fault::new(
        Route::Any,
        FaultKind::status(502, "bad gateway"),
        2,
    ));
    assert_eq!(
        get(format!("{}/app", github.url()), "x").await.status(),
        502
    );
    assert_eq!(
        get(format!("{}/user", github.url()), "x").await.status(),
        502
    );
    assert_eq!(
        get(format!("{}/user", github.url()), "x").await.status(),
        401
    );
    github.push_fault(Fault::new(Route::Any, FaultKind::status(500, ""), 5));
    github.clear_faults();
    assert!(github.pending_faults().is_empty());
    assert_eq!(
        get(
            format!("{}/app", github.url()),
            &format!("Bearer {}", jwt())
        )
        .await
        .status(),
        200
    );
}

/// Reads one HTTP/1.1 response (headers + content-length body) from a raw socket.
fn read_response(stream: &mut std::net::TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "connection closed in headers"
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap();
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).unwrap();
    (head, body)
}

#[tokio::test]
async fn keep_alive_survives_error_faults_and_raw_faults_close() {
    let github = FakeGithub::start(FakeConfig::standard()).await;
    github.push_fault(Fault::once(Route::App, FaultKind::status(503, "{}")));
    github.push_fault(Fault::once(
        Route::InstallationRepositories,
        FaultKind::TruncatedBody,
    ));
    let addr = github.addr();
    let request = "GET /app HTTP/1.1\r\nHost: x\r\nUser-Agent: raw\r\n\r\n";
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let (head, _) = read_response(&mut s);
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        // Same connection, next request: served normally (401, no auth).
        s.write_all(request.as_bytes()).unwrap();
        let (head, body) = read_response(&mut s);
        assert!(head.starts_with("HTTP/1.1 401"), "{head}");
        assert!(
            String::from_utf8(body)
                .unwrap()
                .contains("Requires authentication")
        );
        // Truncated: fewer bytes than content-length, then EOF.
        s.write_all(
            b"GET /installation/repositories HTTP/1.1\r\nHost: x\r\nUser-Agent: raw\r\n\r\n",
        )
        .unwrap();
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        let text = String::from_utf8_lossy(&all).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let declared: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap();
        assert!(body.len() < declared, "{} of {declared}", body.len());
    })
    .await
    .unwrap();
    github.push_fault(Fault::once(Route::App, FaultKind::DropConnection));
    tokio::task::spawn_blocking(move || {
        // Drop: no response bytes at all.
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut all = Vec::new();
        match s.read_to_end(&mut all) {
            Ok(_) => assert!(all.is_empty()),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn control_endpoints() {
    let github = FakeGithub::start(FakeConfig::standard()).await;
    let http = client();
    let base = github.url();
    let resp = http
        .post(format!("{base}/_fake/faults"))
        .body(r#"{"route":"access_tokens","times":1,"kind":{"type":"status","status":503,"body":"{}","headers":{"retry-after":"1"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(github.pending_faults().len(), 1);
    assert_eq!(mint(&github, 100, None).await.0, 503);
    assert_eq!(mint(&github, 100, None).await.0, 201);

    http.post(format!("{base}/_fake/faults"))
        .body(r#"{"route":"any","kind":{"type":"hang"}}"#)
        .send()
        .await
        .unwrap();
    let resp = http
        .delete(format!("{base}/_fake/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["cleared"], 1);

    let resp = http
        .post(format!("{base}/_fake/token-lifetime"))
        .body(r#"{"secs":90}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(github.token_lifetime(), Duration::from_secs(90));
    http.post(format!("{base}/_fake/clock-offset"))
        .body(r#"{"secs":-30}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(github.clock_offset(), -30);
    http.post(format!("{base}/_fake/clock-offset"))
        .body(r#"{"secs":0}"#)
        .send()
        .await
        .unwrap();

    let token = github.last_token().unwrap().token;
    let valid = async |t: String| {
        get_json(&http, format!("{base}/_fake/tokens/{t}/valid")).await["valid"]
            .as_bool()
            .unwrap()
    };
    assert!(valid(token.clone()).await);
    assert!(!valid("ghs_nope".into()).await);
    http.post(format!("{base}/_fake/installations/100/gone"))
        .body(r#"{"gone":true}"#)
        .send()
        .await
        .unwrap();
    assert!(!valid(token.clone()).await);
    assert_eq!(mint(&github, 100, None).await.0, 404);
    http.post(format!("{base}/_fake/installations/100/gone"))
        .body(r#"{"gone":false}"#)
        .send()
        .await
        .unwrap();
    assert!(valid(token).await);

    let stats = get_json(&http, format!("{base}/_fake/stats")).await;
    assert_eq!(stats["mints"], 1);
    assert_eq!(
        stats["requests"], 3,
        "control requests are not recorded: {stats}"
    );
    let requests = get_json(&http, format!("{base}/_fake/requests")).await;
    assert_eq!(requests[0]["path"], "/app/installations/100/access_tokens");
    assert_eq!(
        requests[0]["headers"]["user-agent"],
        "fake-github-tests/1.0"
    );

    let resp = http
        .post(format!("{base}/_fake/faults"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let github = FakeGithub::start(FakeConfig::standard()).await;
    let url = github.url();
    // Keep a request hanging to check shutdown does not wait for it.
    github.push_fault(Fault::once(Route::App, FaultKind::Hang));
    let hanging = tokio::spawn(async move { client().get(format!("{url}/app")).send().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let addr = github.addr();
    let started = Instant::now();
    drop(github);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(hanging.await.unwrap().is_err());
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn handle_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<FakeGithub>();
    assert_send_sync::<Fault>();
}

#[test]
fn start_outside_a_runtime_and_refuse_non_loopback() {
    let addr: std::net::SocketAddr = "0.0.0.0:0".parse().unwrap();
    let err = FakeGithub::start_blocking(addr, FakeConfig::standard()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let github =
        FakeGithub::start_blocking("127.0.0.1:0".parse().unwrap(), FakeConfig::standard()).unwrap();
    let mut s = std::net::TcpStream::connect(github.addr()).unwrap();
    s.write_all(b"GET /app HTTP/1.1\r\nHost: x\r\nUser-Agent: raw\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
}
