//! Google OAuth 2 access tokens for Vertex AI (PROVIDERS.md §9): a service account's JWT
//! (RS256, signed with its PKCS#8 key through `ring`) or an `authorized_user`'s refresh token is
//! exchanged at the credentials' `token_uri`; the token is cached until shortly before it
//! expires and refreshed once for all the requests that find it stale.
//!
//! Neither the private key, the signed assertion, the refresh token nor the access token ever
//! appears in an error, a log line or `Debug` output.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::classify::body_excerpt;
use super::{BoxFuture, RequestAuth};
use crate::errors::{Error, Status};
use crate::secret::Secret;

/// The scope every Vertex AI call needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's token endpoint, for credentials that name none.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The JWT-bearer grant of RFC 7523.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The longest lifetime Google accepts for a service-account assertion.
const ASSERTION_LIFETIME_SECS: u64 = 3600;
/// A token is refreshed this long before it expires (Google's client libraries use 3m45s–5m).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Bounds one token exchange; the request's own timeout bounds the wait for it too.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// The lifetime assumed when the token endpoint names none.
const DEFAULT_LIFETIME_SECS: f64 = 3600.0;

/// How a token is obtained.
enum Grant {
    ServiceAccount {
        client_email: String,
        key_id: Option<String>,
        key: Box<RsaKeyPair>,
    },
    RefreshToken {
        client_id: String,
        client_secret: Secret,
        refresh_token: Secret,
    },
}

/// Credentials read from a service-account (or `gcloud auth application-default login`) JSON.
pub struct Credentials {
    grant: Grant,
    token_uri: String,
    /// The project the service account belongs to: the default `vertex_project`.
    pub project_id: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Credentials");
        match &self.grant {
            Grant::ServiceAccount { client_email, .. } => s.field("client_email", client_email),
            Grant::RefreshToken { client_id, .. } => s.field("client_id", client_id),
        };
        s.field("token_uri", &self.token_uri)
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// `litellm_params.vertex_credentials`: the JSON object, the JSON as a string, or the path of
    /// a JSON file; `os.environ/NAME` names a variable holding either.
    pub fn from_param(v: &Value) -> Result<Credentials, String> {
        const FIELD: &str = "`litellm_params.vertex_credentials`";
        match v {
            Value::Object(o) => Credentials::from_json(o),
            Value::String(s) => {
                let text = match s.strip_prefix("os.environ/") {
                    Some(name) => std::env::var(name).map_err(|_| {
                        format!("{FIELD} names the environment variable {name}, which is not set")
                    })?,
                    None => s.clone(),
                };
                if text.trim_start().starts_with('{') {
                    Credentials::from_text(&text, FIELD)
                } else {
                    Credentials::from_file(text.trim(), FIELD)
                }
            }
            _ => Err(format!(
                "{FIELD} must be a service-account JSON object, a JSON string or a file path"
            )),
        }
    }

    /// `GOOGLE_APPLICATION_CREDENTIALS`, when it is set: Application Default Credentials' file.
    pub fn from_environment() -> Option<Result<Credentials, String>> {
        let path = std::env::var("GOOGLE_APPLICATION_CREDENTIALS").ok()?;
        let path = path.trim();
        (!path.is_empty()).then(|| Credentials::from_file(path, "GOOGLE_APPLICATION_CREDENTIALS"))
    }

    fn from_file(path: &str, field: &str) -> Result<Credentials, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{field}: cannot read the credentials file {path:?}: {e}"))?;
        Credentials::from_text(&text, field)
    }

    fn from_text(text: &str, field: &str) -> Result<Credentials, String> {
        // serde's message names a line and column, never the text.
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(o)) => Credentials::from_json(&o),
            Ok(_) => Err(format!("{field} is not a JSON object")),
            Err(e) => Err(format!("{field} is not valid JSON ({e})")),
        }
    }

    pub fn from_json(o: &Map<String, Value>) -> Result<Credentials, String> {
        let text = |k: &str| {
            o.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let need = |k: &str| text(k).ok_or_else(|| format!("`vertex_credentials` has no `{k}`"));
        let token_uri = text("token_uri").unwrap_or(DEFAULT_TOKEN_URI).to_owned();
        check_token_uri(&token_uri)?;
        let kind = text("type").unwrap_or("service_account");
        let grant = match kind {
            "service_account" => Grant::ServiceAccount {
                client_email: need("client_email")?.to_owned(),
                key_id: text("private_key_id").map(str::to_owned),
                key: Box::new(rsa_key(need("private_key")?)?),
            },
            "authorized_user" => Grant::RefreshToken {
                client_id: need("client_id")?.to_owned(),
                client_secret: Secret::new(need("client_secret")?),
                refresh_token: Secret::new(need("refresh_token")?),
            },
            other => {
                return Err(format!(
                    "`vertex_credentials` of type `{other}` are not supported (`service_account` and `authorized_user` are)"
                ))
            }
        };
        Ok(Credentials {
            grant,
            token_uri,
            project_id: text("project_id").map(str::to_owned),
        })
    }

    /// Who the credentials are, for messages.
    fn who(&self) -> &str {
        match &self.grant {
            Grant::ServiceAccount { client_email, .. } => client_email,
            Grant::RefreshToken { client_id, .. } => client_id,
        }
    }
}

/// The assertion (an hour's bearer credential) goes over TLS, or to this machine.
fn check_token_uri(uri: &str) -> Result<(), String> {
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"];
    let ok = uri.starts_with("https://")
        || loopback.iter().any(|l| {
            uri.strip_prefix(l)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`vertex_credentials.token_uri` {uri:?} must be an https:// URL"
        ))
    }
}

/// A PEM private key (PKCS#8 `PRIVATE KEY`, or PKCS#1 `RSA PRIVATE KEY`) as a signing key.
/// Errors say what is wrong, never what the key holds.
fn rsa_key(pem: &str) -> Result<RsaKeyPair, String> {
    let bad = |why: &str| format!("`vertex_credentials.private_key` {why}");
    // A key pasted through an environment variable may keep its `\n` escapes.
    let pem = pem.replace("\\n", "\n");
    let (label, der) = pem_body(&pem).ok_or_else(|| bad("is not a PEM private key"))?;
    let key = match label {
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
        _ => return Err(bad("is not an RSA private key")),
    };
    key.map_err(|e| bad(&format!("is not a usable RSA key ({e})")))
}

/// The label and the decoded body of the first PEM block.
fn pem_body(pem: &str) -> Option<(&str, Vec<u8>)> {
    let start = pem.find("-----BEGIN ")? + "-----BEGIN ".len();
    let label_end = start + pem[start..].find("-----")?;
    let label = &pem[start..label_end];
    let body_start = label_end + 5;
    let end = body_start + pem[body_start..].find("-----END ")?;
    let der = base64_decode(&pem[body_start..end])?;
    Some((label, der))
}

// ---------------------------------------------------------------------------------------------
// Base64 (RFC 4648): the standard alphabet in, the URL-safe one out (JWTs, no padding).

const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

pub(crate) fn base64url(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(URL_SAFE[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Either alphabet; whitespace skipped; padding optional. `None` on any other byte.
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' | b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// `application/x-www-form-urlencoded` of one value.
fn form_value(out: &mut String, v: &str) {
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(1024);
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        form_value(&mut out, k);
        out.push('=');
        form_value(&mut out, v);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The token exchange

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The service account's signed assertion: `header.claims.signature`, each base64url.
fn sign_assertion(
    key: &RsaKeyPair,
    client_email: &str,
    key_id: Option<&str>,
    audience: &str,
    iat: u64,
) -> Result<String, Error> {
    let mut header = json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = key_id {
        header["kid"] = kid.into();
    }
    let claims = json!({
        "iss": client_email,
        "scope": SCOPE,
        "aud": audience,
        "iat": iat,
        "exp": iat + ASSERTION_LIFETIME_SECS,
    });
    let mut jwt = base64url(header.to_string().as_bytes());
    jwt.push('.');
    jwt.push_str(&base64url(claims.to_string().as_bytes()));
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        jwt.as_bytes(),
        &mut signature,
    )
    .map_err(|_| {
        Error::new(
            Status::Auth,
            "Vertex AI: the service-account assertion could not be signed",
        )
    })?;
    jwt.push('.');
    jwt.push_str(&base64url(&signature));
    Ok(jwt)
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<Value>,
}

/// The cache: the token and when to refresh it; attempts counted so that requests that waited
/// for a failed refresh share its error instead of each trying again.
#[derive(Default)]
struct State {
    token: Option<(HeaderValue, Instant)>,
    attempts: u64,
    failure: Option<(u64, Error)>,
}

/// Access tokens of one set of credentials, for every request of a deployment.
pub struct TokenSource {
    creds: Credentials,
    http: crate::caller_runtime::Http,
    state: Mutex<State>,
    /// Held by the one request that refreshes; the others wait for its outcome. Requests that
    /// find a fresh token never touch it.
    refresh: tokio::sync::Mutex<()>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("credentials", &self.creds)
            .finish_non_exhaustive()
    }
}

/// When a token of this lifetime is refreshed: [`REFRESH_MARGIN`] early, or halfway through a
/// lifetime too short for that.
fn refresh_after(lifetime_secs: f64) -> Duration {
    let lifetime = Duration::from_secs_f64(lifetime_secs.clamp(0.0, 86_400.0));
    if lifetime > REFRESH_MARGIN * 2 {
        lifetime - REFRESH_MARGIN
    } else {
        lifetime / 2
    }
}

impl TokenSource {
    pub fn new(creds: Credentials, http: crate::caller_runtime::Http) -> TokenSource {
        TokenSource {
            creds,
            http,
            state: Mutex::new(State::default()),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fresh(st: &State) -> Option<HeaderValue> {
        st.token
            .as_ref()
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(h, _)| h.clone())
    }

    /// `Bearer <token>`, fetching a new token when the cached one is stale.
    pub async fn authorization(&self) -> Result<HeaderValue, Error> {
        let seen = {
            let st = self.state();
            if let Some(h) = Self::fresh(&st) {
                return Ok(h);
            }
            st.attempts
        };
        let _flight = self.refresh.lock().await;
        {
            let st = self.state();
            if let Some(h) = Self::fresh(&st) {
                return Ok(h);
            }
            if st.attempts != seen {
                if let Some((_, e)) = st.failure.as_ref().filter(|(n, _)| *n == st.attempts) {
                    return Err(e.clone());
                }
            }
        }
        let outcome = self.fetch().await;
        let mut st = self.state();
        st.attempts += 1;
        match outcome {
            Ok((header, lifetime)) => {
                st.token = Some((header.clone(), Instant::now() + refresh_after(lifetime)));
                st.failure = None;
                Ok(header)
            }
            Err(e) => {
                st.failure = Some((st.attempts, e.clone()));
                Err(e)
            }
        }
    }

    /// One exchange at the token endpoint: the header and the token's lifetime in seconds.
    async fn fetch(&self) -> Result<(HeaderValue, f64), Error> {
        let c = &self.creds;
        // What the body carries that must not come back in a message.
        let (body, secrets): (String, Vec<String>) = match &c.grant {
            Grant::ServiceAccount {
                client_email,
                key_id,
                key,
            } => {
                let assertion = sign_assertion(
                    key,
                    client_email,
                    key_id.as_deref(),
                    &c.token_uri,
                    unix_secs(),
                )?;
                let body = form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)]);
                (body, vec![assertion])
            }
            Grant::RefreshToken {
                client_id,
                client_secret,
                refresh_token,
            } => (
                form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id),
                    ("client_secret", client_secret.expose()),
                    ("refresh_token", refresh_token.expose()),
                ]),
                vec![
                    client_secret.expose().to_owned(),
                    refresh_token.expose().to_owned(),
                ],
            ),
        };
        let fail = |detail: String| {
            let mut message = format!(
                "Vertex AI: no access token for {} from {}: {detail}",
                c.who(),
                c.token_uri
            );
            for s in &secrets {
                if message.contains(s.as_str()) {
                    message = message.replace(s.as_str(), "[REDACTED]");
                }
            }
            Error::new(Status::Auth, message)
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let resp = self
            .http
            .send(
                self.http
                    .request(reqwest::Method::POST, &c.token_uri)
                    .headers(headers)
                    .timeout(TOKEN_TIMEOUT)
                    .body(body),
            )
            .await
            .map_err(|e| fail(transport_detail(&e)))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| fail(transport_detail(&e)))?;
        if !(200..300).contains(&status) {
            let mut e = fail(format!("HTTP {status}: {}", oauth_error(&bytes)));
            e.http_status = Some(status);
            return Err(e);
        }
        let answer: TokenAnswer = serde_json::from_slice(&bytes)
            .map_err(|_| fail("the token endpoint's answer holds no `access_token`".to_owned()))?;
        let mut header = HeaderValue::from_str(&format!("Bearer {}", answer.access_token))
            .map_err(|_| fail("the access token is not header-safe".to_owned()))?;
        header.set_sensitive(true);
        let lifetime = match &answer.expires_in {
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|l: &f64| l.is_finite() && *l > 0.0)
        .unwrap_or(DEFAULT_LIFETIME_SECS);
        Ok((header, lifetime))
    }
}

fn transport_detail(e: &reqwest::Error) -> String {
    let mut detail = if e.is_timeout() {
        "the token request timed out".to_owned()
    } else {
        "the token request failed".to_owned()
    };
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        src = s.source();
    }
    detail
}

/// What an OAuth error body says: `{"error","error_description"}` (RFC 6749), or Google's
/// `{"error":{"message","status"}}` envelope, or an excerpt.
fn oauth_error(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return body_excerpt(body);
    };
    match v.get("error") {
        Some(Value::String(code)) => match v.get("error_description").and_then(Value::as_str) {
            Some(d) if !d.is_empty() => format!("{code}: {d}"),
            _ => code.clone(),
        },
        Some(Value::Object(e)) => {
            let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
            format!("{} {}", text("status"), text("message"))
                .trim()
                .to_owned()
        }
        _ => body_excerpt(body),
    }
}

impl RequestAuth for TokenSource {
    fn authorize<'a>(
        &'a self,
        _url: &'a str,
        _body: &'a [u8],
        headers: &'a mut HeaderMap,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let h = self.authorization().await?;
            headers.insert(AUTHORIZATION, h);
            Ok(())
        })
    }

    fn rejected(&self, authorization: &HeaderValue) {
        let mut st = self.state();
        if st.token.as_ref().is_some_and(|(h, _)| h == authorization) {
            st.token = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmr_testkit::{Reply, StandIn, VERTEX_ACCESS_TOKEN};
    use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
    use std::sync::Arc;

    const PEM: &str = include_str!("../../tests/data/vertex_test_key.pem");
    /// A PKCS#1 RSAPublicKey (not SubjectPublicKeyInfo): what `ring` verifies with.
    const PUBLIC_DER: &[u8] = include_bytes!("../../tests/data/vertex_test_key.pub.der");
    const EMAIL: &str = "llmr-test@proj-1.iam.gserviceaccount.com";

    fn service_account(token_uri: &str) -> Value {
        json!({"type": "service_account", "project_id": "proj-1", "private_key_id": "kid-1",
               "private_key": PEM, "client_email": EMAIL, "client_id": "1234",
               "token_uri": token_uri})
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    fn source(token_uri: &str) -> Arc<TokenSource> {
        let creds = Credentials::from_param(&service_account(token_uri)).unwrap();
        Arc::new(TokenSource::new(
            creds,
            crate::caller_runtime::Http::new(reqwest::Client::new()),
        ))
    }

    /// The form fields of a recorded token request.
    fn form_fields(body: &Value) -> Vec<(String, String)> {
        let text = body.as_str().expect("a form body, not JSON");
        text.split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                let decode = |s: &str| {
                    let mut out = Vec::new();
                    let b = s.as_bytes();
                    let mut i = 0;
                    while i < b.len() {
                        match b[i] {
                            b'%' => {
                                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                                i += 3;
                            }
                            b'+' => {
                                out.push(b' ');
                                i += 1;
                            }
                            c => {
                                out.push(c);
                                i += 1;
                            }
                        }
                    }
                    String::from_utf8(out).unwrap()
                };
                (decode(k), decode(v))
            })
            .collect()
    }

    #[test]
    fn base64url_and_decoding() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64url(raw.as_bytes()), enc);
            assert_eq!(base64_decode(enc).unwrap(), raw.as_bytes());
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64_decode("+/8=").unwrap(), [0xfb, 0xff]);
        assert_eq!(base64_decode("Zm9v\nYmFy\r\n").unwrap(), b"foobar");
        assert!(base64_decode("Zm9v!").is_none());
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form(&[("grant_type", JWT_BEARER_GRANT), ("a b", "x+y/z")]),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&a+b=x%2By%2Fz"
        );
    }

    #[test]
    fn the_assertion_is_an_rs256_jwt_the_public_key_verifies() {
        let creds =
            Credentials::from_param(&service_account("https://oauth2.googleapis.com/token"))
                .unwrap();
        let Grant::ServiceAccount {
            key,
            client_email,
            key_id,
        } = &creds.grant
        else {
            panic!("a service account");
        };
        let jwt = sign_assertion(
            key,
            client_email,
            key_id.as_deref(),
            &creds.token_uri,
            1_700_000_000,
        )
        .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert!(!jwt.contains('='), "no padding");
        let header: Value = serde_json::from_slice(&base64_decode(parts[0]).unwrap()).unwrap();
        assert_eq!(
            header,
            json!({"alg": "RS256", "typ": "JWT", "kid": "kid-1"})
        );
        let claims: Value = serde_json::from_slice(&base64_decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            claims,
            json!({"iss": EMAIL, "scope": SCOPE, "aud": "https://oauth2.googleapis.com/token",
                   "iat": 1_700_000_000u64, "exp": 1_700_003_600u64})
        );
        let signature = base64_decode(parts[2]).unwrap();
        assert_eq!(signature.len(), 256, "a 2048-bit key");
        let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, PUBLIC_DER);
        let signed = format!("{}.{}", parts[0], parts[1]);
        public
            .verify(signed.as_bytes(), &signature)
            .expect("the signature verifies");
        let mut tampered = signed.into_bytes();
        tampered[5] ^= 1;
        assert!(public.verify(&tampered, &signature).is_err());
    }

    #[test]
    fn credentials_forms_and_their_errors() {
        let sa = service_account("https://oauth2.googleapis.com/token");
        // The object, the JSON string, a file path, an environment variable.
        let c = Credentials::from_param(&sa).unwrap();
        assert_eq!(c.project_id.as_deref(), Some("proj-1"));
        Credentials::from_param(&Value::String(sa.to_string())).unwrap();
        let path = std::env::temp_dir().join(format!("llmr-sa-{}.json", std::process::id()));
        std::fs::write(&path, sa.to_string()).unwrap();
        Credentials::from_param(&Value::String(path.display().to_string())).unwrap();
        std::env::set_var("LLMR_TEST_VERTEX_SA_PATH", path.display().to_string());
        Credentials::from_param(&json!("os.environ/LLMR_TEST_VERTEX_SA_PATH")).unwrap();
        std::fs::remove_file(&path).unwrap();
        // A key whose newlines came through as `\n` escapes.
        let mut escaped = sa.clone();
        escaped["private_key"] = PEM.replace('\n', "\\n").into();
        Credentials::from_param(&escaped).unwrap();
        // PKCS#1 PEMs are read too; the default token endpoint is Google's.
        let mut no_uri = sa.clone();
        no_uri.as_object_mut().unwrap().remove("token_uri");
        assert_eq!(
            Credentials::from_param(&no_uri).unwrap().token_uri,
            DEFAULT_TOKEN_URI
        );

        let user = json!({"type": "authorized_user", "client_id": "cid.apps.googleusercontent.com",
                          "client_secret": "d-FL95Q19q7MQmFpd7hHD0Ty", "refresh_token": "1//0refresh-secret"});
        let c = Credentials::from_param(&user).unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("refresh-secret") && !shown.contains("d-FL95Q"),
            "{shown}"
        );

        let err = |v: Value| Credentials::from_param(&v).unwrap_err();
        let mut broken = sa.clone();
        let secret_part = &PEM[40..80];
        broken["private_key"] = PEM.replace(secret_part, "AAAA").into();
        let e = err(broken);
        assert!(
            e.contains("private_key") && !e.contains(&PEM[100..140]),
            "{e}"
        );
        let mut no_email = sa.clone();
        no_email.as_object_mut().unwrap().remove("client_email");
        assert!(err(no_email).contains("client_email"));
        let mut plain_http = sa.clone();
        plain_http["token_uri"] = "http://oauth.example.com/token".into();
        assert!(err(plain_http).contains("https://"));
        assert!(err(json!({"type": "external_account"})).contains("external_account"));
        assert!(err(json!("{not json")).contains("not valid JSON"));
        assert!(err(json!("/no/such/credentials.json")).contains("cannot read"));
        assert!(err(json!("os.environ/LLMR_TEST_VERTEX_UNSET")).contains("not set"));
        assert!(err(json!(5)).contains("must be"));
        let shown = format!("{:?}", Credentials::from_param(&sa).unwrap());
        assert!(
            !shown.contains("PRIVATE KEY") && shown.contains(EMAIL),
            "{shown}"
        );
    }

    #[test]
    fn one_token_exchange_for_many_concurrent_requests() {
        let standin = StandIn::start();
        let token_uri = format!("{}/tok/token", standin.url());
        // A slow token endpoint: every request arrives while the first exchange is in flight.
        standin.script("tok", [Reply::ok().delay(Duration::from_millis(200))]);
        let src = source(&token_uri);
        let rt = runtime();
        let headers: Vec<HeaderValue> = rt.block_on(async {
            let tasks: Vec<_> = (0..16)
                .map(|_| {
                    let src = Arc::clone(&src);
                    tokio::spawn(async move {
                        let mut h = HeaderMap::new();
                        src.authorize("u", b"", &mut h).await.unwrap();
                        h[AUTHORIZATION].clone()
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        });
        assert_eq!(standin.count("tok"), 1);
        let expected = format!("Bearer {VERTEX_ACCESS_TOKEN}");
        assert!(headers.iter().all(|h| h == expected.as_str()));
        assert!(headers[0].is_sensitive());
        assert!(!format!("{src:?}").contains(VERTEX_ACCESS_TOKEN));

        // The request: a form-encoded JWT-bearer grant whose assertion names the token endpoint.
        let sent = standin.last_request("tok").unwrap();
        assert_eq!(sent.path, "/tok/token");
        assert_eq!(
            sent.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        let fields = form_fields(&sent.body);
        assert_eq!(
            fields[0],
            ("grant_type".to_owned(), JWT_BEARER_GRANT.to_owned())
        );
        assert_eq!(fields[1].0, "assertion");
        let claims = fields[1].1.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(&base64_decode(claims).unwrap()).unwrap();
        assert_eq!(claims["aud"], token_uri.as_str());
        assert_eq!(claims["iss"], EMAIL);
        let iat = claims["iat"].as_u64().unwrap();
        assert!(iat.abs_diff(unix_secs()) < 60);
        assert_eq!(claims["exp"].as_u64().unwrap(), iat + 3600);

        // A cached token is used without asking again.
        rt.block_on(src.authorization()).unwrap();
        assert_eq!(standin.count("tok"), 1);
    }

    #[test]
    fn a_token_is_refreshed_before_it_expires() {
        let standin = StandIn::start();
        let src = source(&format!("{}/tok/token", standin.url()));
        standin.script(
            "tok",
            [
                Reply::body(
                    200,
                    r#"{"access_token":"ya29.first","expires_in":1,"token_type":"Bearer"}"#,
                ),
                Reply::body(
                    200,
                    r#"{"access_token":"ya29.second","expires_in":"3599","token_type":"Bearer"}"#,
                ),
            ],
        );
        let rt = runtime();
        assert_eq!(
            rt.block_on(src.authorization()).unwrap(),
            "Bearer ya29.first"
        );
        // A one-second token is refreshed halfway through its life.
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(
            rt.block_on(src.authorization()).unwrap(),
            "Bearer ya29.second"
        );
        assert_eq!(
            rt.block_on(src.authorization()).unwrap(),
            "Bearer ya29.second"
        );
        assert_eq!(standin.count("tok"), 2);
        assert_eq!(refresh_after(3599.0), Duration::from_secs(3299));
        assert_eq!(refresh_after(1.0), Duration::from_millis(500));
    }

    #[test]
    fn refusals_are_auth_errors_that_carry_the_endpoints_reason_and_no_secret() {
        let standin = StandIn::start();
        let src = source(&format!("{}/tok/token", standin.url()));
        let rt = runtime();
        standin.script(
            "tok",
            [
                Reply::body(
                    400,
                    r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
                ),
                Reply::body(200, r#"{"token_type":"Bearer"}"#),
            ],
        );
        let e = rt.block_on(src.authorization()).unwrap_err();
        assert_eq!((e.status, e.http_status), (Status::Auth, Some(400)));
        assert!(
            e.message.contains("invalid_grant: Invalid JWT Signature."),
            "{}",
            e.message
        );
        assert!(e.message.contains(EMAIL), "{}", e.message);
        let e = rt.block_on(src.authorization()).unwrap_err();
        assert_eq!(e.status, Status::Auth);
        assert!(e.message.contains("no `access_token`"), "{}", e.message);

        // The stand-in's own refusal (a bad signature): the assertion is not in the message.
        let src2 = source(&format!("{}/e401/token", standin.url()));
        let e = rt.block_on(src2.authorization()).unwrap_err();
        assert_eq!((e.status, e.http_status), (Status::Auth, Some(401)));
        assert!(e.message.contains("invalid_grant"), "{}", e.message);
        let assertion = form_fields(&standin.last_request("e401").unwrap().body)[1]
            .1
            .clone();
        assert!(!e.message.contains(&assertion));

        // Nobody listening.
        let src3 = source("http://127.0.0.1:9/token");
        let e = rt.block_on(src3.authorization()).unwrap_err();
        assert_eq!(e.status, Status::Auth);
        assert!(e.message.contains("token request failed"), "{}", e.message);
    }

    #[test]
    fn requests_that_waited_for_a_failed_refresh_share_its_error() {
        let standin = StandIn::start();
        standin.script(
            "tok",
            [Reply::status(500).delay(Duration::from_millis(200))],
        );
        let src = source(&format!("{}/tok/token", standin.url()));
        let rt = runtime();
        let results: Vec<Result<HeaderValue, Error>> = rt.block_on(async {
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let src = Arc::clone(&src);
                    tokio::spawn(async move { src.authorization().await })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        });
        assert!(results
            .iter()
            .all(|r| r.as_ref().is_err_and(|e| e.status == Status::Auth)));
        assert_eq!(standin.count("tok"), 1);
        // A later request tries again.
        assert!(rt.block_on(src.authorization()).is_ok());
        assert_eq!(standin.count("tok"), 2);
    }

    #[test]
    fn authorized_user_refresh_token_grant() {
        let standin = StandIn::start();
        let user = json!({"type": "authorized_user", "client_id": "cid", "client_secret": "csecret-123",
                          "refresh_token": "1//refresh-123",
                          "token_uri": format!("{}/tok/token", standin.url())});
        let src = TokenSource::new(
            Credentials::from_param(&user).unwrap(),
            crate::caller_runtime::Http::new(reqwest::Client::new()),
        );
        let rt = runtime();
        assert_eq!(
            rt.block_on(src.authorization()).unwrap(),
            format!("Bearer {VERTEX_ACCESS_TOKEN}").as_str()
        );
        let fields = form_fields(&standin.last_request("tok").unwrap().body);
        assert_eq!(
            fields,
            [
                ("grant_type", "refresh_token"),
                ("client_id", "cid"),
                ("client_secret", "csecret-123"),
                ("refresh_token", "1//refresh-123"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }
}
