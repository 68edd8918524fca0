//! A stand-in for the part of GitHub's REST API that bootstrap uses, on a wiremock server. It
//! answers as docs.github.com documents each endpoint (paths, status codes, bodies, headers),
//! keeps state (variables, secrets) so that a second run sees the first one's work, and holds
//! the private half of the repository's secrets key so that tests can open what was stored.
//!
//! | endpoint | answer |
//! |---|---|
//! | GET /repos/{owner}/{repo} | 200 repository, `X-OAuth-Scopes` of the token |
//! | GET …/actions/variables/{name} | 200 `{name, value, created_at, updated_at}` or 404 |
//! | POST …/actions/variables `{name, value}` | 201 (409 if it exists) |
//! | PATCH …/actions/variables/{name} `{value}` | 204 (404 if missing) |
//! | GET …/actions/secrets/public-key | 200 `{key_id, key}` |
//! | PUT …/actions/secrets/{name} `{encrypted_value, key_id}` | 201 created, 204 updated; 422 on a wrong key_id |
//! | POST …/actions/runners/registration-token | 201 `{token, expires_at}` |
//!
//! Every request needs `Authorization: Bearer|token <token>` (else 401 "Requires
//! authentication", a wrong token 401 "Bad credentials") and a User-Agent (else 403). A token
//! without the `repo` scope may read the repository but every Actions call gets 403 with
//! `X-Accepted-OAuth-Scopes: repo`. Another repository is 404.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const TOKEN: &str = "ghp_netsecTestToken0123456789abcdefABCD";
pub const TOKEN_WITHOUT_REPO_SCOPE: &str = "ghp_readOrgOnly0123456789abcdefABCDEFG";
const KEY_ID: &str = "568250167242549743";
const DOCS: &str = "https://docs.github.com/rest";

#[derive(Default)]
pub struct State {
    pub variables: BTreeMap<String, String>,
    /// Name → the sealed value as stored.
    pub secrets: BTreeMap<String, String>,
    pub runner_tokens: Vec<String>,
    /// `METHOD /path` of every request, in order.
    pub requests: Vec<String>,
}

pub struct FakeGitHub {
    pub server: MockServer,
    pub state: Arc<Mutex<State>>,
    secret_key: crypto_box::SecretKey,
    pub repo: String,
}

impl FakeGitHub {
    pub async fn start(repo: &str) -> FakeGitHub {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::default()));
        let secret_key = crypto_box::SecretKey::from([7u8; 32]);
        let public_key = STANDARD.encode(secret_key.public_key().as_bytes());
        let responder = Responder { state: state.clone(), repo: repo.to_string(), public_key };
        Mock::given(wiremock::matchers::any()).respond_with(responder).mount(&server).await;
        FakeGitHub { server, state, secret_key, repo: repo.to_string() }
    }

    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// A stored secret, opened with the repository's private key.
    pub fn secret(&self, name: &str) -> Option<String> {
        let sealed = self.state.lock().unwrap().secrets.get(name)?.clone();
        let opened = self.secret_key.unseal(&STANDARD.decode(sealed).ok()?).ok()?;
        String::from_utf8(opened).ok()
    }

    pub fn requests(&self, prefix: &str) -> usize {
        self.state.lock().unwrap().requests.iter().filter(|r| r.starts_with(prefix)).count()
    }
}

struct Responder {
    state: Arc<Mutex<State>>,
    repo: String,
    public_key: String,
}

fn error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"message": message, "documentation_url": DOCS}))
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let method = request.method.to_string();
        let path = request.url.path().to_string();
        self.state.lock().unwrap().requests.push(format!("{method} {path}"));
        if request.headers.get("user-agent").is_none() {
            return error(
                403,
                "Request forbidden by administrative rules. Please make sure your request has a User-Agent header",
            );
        }
        let auth = request.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        let token = auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("token ")).unwrap_or("");
        if token.is_empty() {
            return error(401, "Requires authentication");
        }
        if token != TOKEN && token != TOKEN_WITHOUT_REPO_SCOPE {
            return error(401, "Bad credentials");
        }
        let Some(rest) = path.strip_prefix(&format!("/repos/{}", self.repo)) else {
            return error(404, "Not Found");
        };
        if rest.is_empty() && method == "GET" {
            let scopes = if token == TOKEN { "repo, workflow" } else { "read:org" };
            let (owner, name) = self.repo.split_once('/').unwrap();
            return ResponseTemplate::new(200)
                .insert_header("x-oauth-scopes", scopes)
                .insert_header("x-accepted-oauth-scopes", "repo")
                .set_body_json(json!({
                    "id": 1296269, "name": name, "full_name": self.repo, "private": true,
                    "owner": {"login": owner, "id": 1, "type": "User"},
                }));
        }
        if token != TOKEN {
            return error(403, "Resource not accessible by personal access token")
                .insert_header("x-accepted-oauth-scopes", "repo");
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        self.actions(&method, rest, &body)
    }
}

impl Responder {
    fn actions(&self, method: &str, rest: &str, body: &Value) -> ResponseTemplate {
        let mut state = self.state.lock().unwrap();
        let now = "2026-12-01T12:00:00Z";
        match (method, rest.strip_prefix("/actions")) {
            ("GET", Some("/secrets/public-key")) => {
                ResponseTemplate::new(200).set_body_json(json!({"key_id": KEY_ID, "key": self.public_key}))
            }
            ("PUT", Some(secret)) if secret.starts_with("/secrets/") => {
                let name = &secret["/secrets/".len()..];
                let (Some(value), Some(key_id)) = (body["encrypted_value"].as_str(), body["key_id"].as_str()) else {
                    return error(422, "Invalid request.\n\n\"encrypted_value\", \"key_id\" weren't supplied.");
                };
                if key_id != KEY_ID || STANDARD.decode(value).is_err() {
                    return error(422, "Bad request: the key_id or encrypted_value is invalid");
                }
                let existed = state.secrets.insert(name.to_string(), value.to_string()).is_some();
                ResponseTemplate::new(if existed { 204 } else { 201 })
            }
            ("GET", Some(variable)) if variable.starts_with("/variables/") => {
                let name = &variable["/variables/".len()..];
                match state.variables.get(name) {
                    Some(value) => ResponseTemplate::new(200)
                        .set_body_json(json!({"name": name, "value": value, "created_at": now, "updated_at": now})),
                    None => error(404, "Not Found"),
                }
            }
            ("POST", Some("/variables")) => {
                let (Some(name), Some(value)) = (body["name"].as_str(), body["value"].as_str()) else {
                    return error(422, "Invalid request.\n\n\"name\", \"value\" weren't supplied.");
                };
                if state.variables.contains_key(name) {
                    return error(409, "Already exists - Variable already exists");
                }
                state.variables.insert(name.to_string(), value.to_string());
                ResponseTemplate::new(201).set_body_json(json!({}))
            }
            ("PATCH", Some(variable)) if variable.starts_with("/variables/") => {
                let name = &variable["/variables/".len()..];
                let Some(value) = body["value"].as_str() else {
                    return error(422, "Invalid request.");
                };
                match state.variables.get_mut(name) {
                    Some(stored) => {
                        *stored = value.to_string();
                        ResponseTemplate::new(204)
                    }
                    None => error(404, "Not Found"),
                }
            }
            ("POST", Some("/runners/registration-token")) => {
                let token = format!("AABF3JGZDX3P5PMEXLND6TS6FCWO{}", state.runner_tokens.len());
                state.runner_tokens.push(token.clone());
                ResponseTemplate::new(201)
                    .set_body_json(json!({"token": token, "expires_at": "2026-12-01T13:00:00.000Z"}))
            }
            _ => error(404, "Not Found"),
        }
    }
}
