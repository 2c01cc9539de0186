//! The dashboard: server-rendered pages at `/` for the whole loop — models (versions, curves,
//! confusion matrix, promotion history, promote/rollback), try-it with token highlights, the
//! review queue with keyboard labelling, usage with a chart and CSV export, keys and tenants,
//! and a tenant's "New model" page (upload, train with a live progress bar, report, deploy).
//!
//! Sign-in takes the admin token or a tenant's API key; the session cookie carries that
//! credential (HttpOnly, SameSite=Strict, 12 hours), so every page load is authorised exactly
//! as an API call is: a revoked key loses the dashboard at once, and replicas need no shared
//! session state. Forms post only from the same origin (the `Origin` / `Sec-Fetch-Site`
//! headers are checked on top of the SameSite cookie). Without a store the server is open, as
//! its API is, and the pages that need accounts say so.

mod pages;
mod view;

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use flywheel_store::KeyInfo;

use crate::access::Caller;
use crate::state::AppState;

/// Name of the session cookie.
const COOKIE: &str = "fw_session";
/// How long a sign-in lasts.
const SESSION_SECONDS: u64 = 12 * 3600;
/// Longest session cookie value read (hex digits of the credential).
const MAX_COOKIE_HEX: usize = 1024;

/// The dashboard's routes (merged into the API router).
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(pages::models::models))
        .route("/models/{name}", get(pages::model::model))
        .route("/models/{name}/promote", post(pages::model::promote))
        .route("/models/{name}/rollback", post(pages::model::rollback))
        .route("/models/{name}/audit", post(pages::model::audit))
        .route(
            "/models/{name}/audit/review",
            post(pages::model::audit_review),
        )
        .route(
            "/try",
            get(pages::try_it::try_page).post(pages::try_it::try_post),
        )
        .route("/review", get(pages::review::review))
        .route("/review/{id}", post(pages::review::review_post))
        .route("/usage", get(pages::usage::usage))
        .route("/usage.csv", get(pages::usage::usage_csv))
        .route(
            "/keys",
            get(pages::keys::keys).post(pages::keys::create_key),
        )
        .route("/keys/revoke", post(pages::keys::revoke_key))
        .route("/new", get(pages::build::new_model))
        .route("/new/datasets", post(pages::build::upload))
        .route("/new/train", post(pages::build::train))
        .route("/jobs/{id}", get(pages::build::job_page))
        .route("/jobs/{id}/status", get(pages::build::job_status))
        .route("/jobs/{id}/report", get(pages::build::job_report))
        .route("/jobs/{id}/deploy", post(pages::build::job_deploy))
        .route("/jobs/{id}/cancel", post(pages::build::job_cancel))
        .route("/tenants", post(pages::keys::create_tenant))
        .route(
            "/login",
            get(pages::sign_in::login_page).post(pages::sign_in::login),
        )
        .route("/logout", post(pages::sign_in::logout))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
}

/// Who is looking at the dashboard.
#[derive(Debug, Clone)]
pub(crate) enum Viewer {
    /// No store: the server is open, as its API is.
    Open,
    /// Signed in with the admin token: every tenant, every model, every action.
    Admin,
    /// Signed in with a tenant's API key: that tenant's models, usage and keys only.
    Tenant(KeyInfo),
}

impl Viewer {
    /// The same caller as an API request with this credential.
    fn caller(&self) -> Caller {
        match self {
            Viewer::Open => Caller::Open,
            Viewer::Admin => Caller::Admin,
            Viewer::Tenant(k) => Caller::Key(k.clone()),
        }
    }

    /// The tenant whose rows this viewer sees (`None`: all).
    fn tenant(&self) -> Option<&str> {
        match self {
            Viewer::Tenant(k) => Some(&k.tenant),
            _ => None,
        }
    }

    /// Whether the viewer may change the registry (promote, roll back) and manage tenants.
    fn is_admin(&self) -> bool {
        matches!(self, Viewer::Admin)
    }

    /// A short description for the header.
    fn describe(&self) -> String {
        match self {
            Viewer::Open => "open server (no accounts)".into(),
            Viewer::Admin => "admin".into(),
            Viewer::Tenant(k) => format!("tenant {} · key {}", k.tenant, k.prefix),
        }
    }
}

/// The session credential of a request, if its cookie holds one.
fn session_token(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            if let Some((name, v)) = pair.trim().split_once('=') {
                if name == COOKIE && v.len() <= MAX_COOKIE_HEX {
                    return hex::decode(v).ok().and_then(|b| String::from_utf8(b).ok());
                }
            }
        }
    }
    None
}

/// The `Set-Cookie` value that signs in with `token` (or, with `None`, signs out).
fn session_cookie(token: Option<&str>, headers: &HeaderMap) -> String {
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let secure = if secure { "; Secure" } else { "" };
    match token {
        Some(t) => format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}{secure}",
            hex::encode(t)
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

/// Whether a form post comes from the dashboard's own pages: the browser's `Origin` (or, when
/// absent, `Sec-Fetch-Site`) must name this host.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN) {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        return matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h));
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => matches!(site, "same-origin" | "none"),
        None => true,
    }
}

/// What a page handler fails with: a sign-in redirect or an HTML error page.
pub(crate) enum PageError {
    /// Not signed in (or the credential no longer works): go to the sign-in page.
    SignIn(String),
    /// An error page with this status and message.
    Page(StatusCode, String),
}

impl PageError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        PageError::Page(status, message.into())
    }

    fn store(e: &flywheel_store::Error) -> Self {
        tracing::error!(error = %e, "store error");
        PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the account database is unavailable; reload shortly",
        )
    }

    fn forbidden(what: &str) -> Self {
        PageError::new(StatusCode::FORBIDDEN, format!("only the admin may {what}"))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn(next) => {
                let target = format!("/login?next={}", url_encode(&next));
                redirect(&target)
            }
            PageError::Page(status, message) => {
                let body = view::error_page(status, &message);
                html(status, body)
            }
        }
    }
}

/// An HTML response.
fn html(status: StatusCode, markup: maud::Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}

/// 303 See Other to `to` (a path on this server).
fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// Percent-encodes a query value.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A path on this server that is safe to redirect to after sign-in.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

impl AppState {
    /// The viewer of a dashboard request: open without a store; else the cookie's credential
    /// must be the admin token or a valid key (or the request goes to the sign-in page).
    pub(crate) async fn viewer(
        &self,
        headers: &HeaderMap,
        here: &str,
    ) -> Result<Viewer, PageError> {
        let Some(store) = &self.store else {
            return Ok(Viewer::Open);
        };
        let Some(token) = session_token(headers) else {
            return Err(PageError::SignIn(here.to_string()));
        };
        match self.identify(store, &token).await {
            Ok(Some(Caller::Key(key))) => Ok(Viewer::Tenant(key)),
            Ok(Some(Caller::Admin)) => Ok(Viewer::Admin),
            Ok(Some(Caller::Open) | None) => Err(PageError::SignIn(here.to_string())),
            Err(e) => Err(PageError::store(&e)),
        }
    }

    /// The viewer of a form post, which must come from the dashboard's own pages.
    async fn poster(&self, headers: &HeaderMap, here: &str) -> Result<Viewer, PageError> {
        if !same_origin(headers) {
            return Err(PageError::new(
                StatusCode::FORBIDDEN,
                "this form was posted from another site; reload the page and try again",
            ));
        }
        self.viewer(headers, here).await
    }
}

async fn css() -> Response {
    asset(include_str!("app.css"), "text/css; charset=utf-8")
}

async fn js() -> Response {
    asset(include_str!("app.js"), "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_cookie_round_trips_any_token() {
        let token = "an admin token; with = signs, spaces and ünïcode";
        let set = session_cookie(Some(token), &HeaderMap::new());
        let value = set.split(';').next().unwrap();
        let h = headers(&[("cookie", &format!("other=1; {value}; x=y"))]);
        assert_eq!(session_token(&h).as_deref(), Some(token));
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(!set.contains("Secure"));
        let https = headers(&[("x-forwarded-proto", "https")]);
        assert!(session_cookie(Some("t"), &https).ends_with("; Secure"));
        assert!(session_cookie(None, &https).contains("Max-Age=0"));
        assert_eq!(
            session_token(&headers(&[("cookie", "fw_session=zz")])),
            None
        );
        assert_eq!(session_token(&HeaderMap::new()), None);
    }

    #[test]
    fn posts_must_come_from_this_host() {
        let host = ("host", "127.0.0.1:8080");
        assert!(same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[host, ("origin", "null")])));
        assert!(!same_origin(&headers(&[
            host,
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(same_origin(&headers(&[host])));
    }

    #[test]
    fn sign_in_redirects_stay_on_this_server() {
        assert_eq!(safe_next(Some("/usage?from=x")), "/usage?from=x");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil")), "/");
        assert_eq!(safe_next(None), "/");
        assert_eq!(url_encode("/try?model=a b"), "/try%3Fmodel%3Da%20b");
    }
}
