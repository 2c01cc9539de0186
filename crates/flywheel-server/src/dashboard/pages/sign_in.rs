//! The sign-in page: `GET /login`, `POST /login` and `POST /logout`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use maud::{html, Markup};
use serde::Deserialize;

use super::{field, ok, read_form, PageResult};
use crate::dashboard::view::{self, layout, Tab};
use crate::dashboard::{html as page, redirect, safe_next, same_origin, session_cookie, PageError};
use crate::state::AppState;

/// Query of the sign-in page.
#[derive(Debug, Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

fn login_form(next: &str, error: Option<&str>) -> Markup {
    html! {
        (view::alert(error))
        form.card.login method="post" action="/login" {
            input type="hidden" name="next" value=(next);
            label for="token" { "Admin token or API key" }
            input #token type="password" name="token" required autocomplete="off" autofocus
                spellcheck="false" aria-describedby="token-help";
            p #token-help .muted {
                "The admin token sees every tenant; a tenant's API key (fw_…) sees only its tenant."
            }
            button type="submit" { "Sign in" }
        }
    }
}

/// `GET /login`.
pub(crate) async fn login_page(
    State(state): State<Arc<AppState>>,
    Query(q): Query<NextQuery>,
) -> PageResult {
    if state.store.is_none() {
        return Ok(redirect("/"));
    }
    let next = safe_next(q.next.as_deref());
    ok(layout("Sign in", Tab::None, None, login_form(next, None)))
}

/// `POST /login`: checks the credential and sets the session cookie.
pub(crate) async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    if !same_origin(&headers) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "this form was posted from another site",
        ));
    }
    let (_, fields) = read_form(&state, &headers, body).await?;
    let next = safe_next(field(&fields, "next")).to_string();
    let Some(store) = &state.store else {
        return Ok(redirect(&next));
    };
    let token = field(&fields, "token").unwrap_or("").trim().to_string();
    let valid = !token.is_empty()
        && state
            .identify(store, &token)
            .await
            .map_err(|e| PageError::store(&e))?
            .is_some();
    if !valid {
        let form = login_form(&next, Some("That token is not valid (unknown or revoked)."));
        return Ok(page(
            StatusCode::UNAUTHORIZED,
            layout("Sign in", Tab::None, None, form),
        ));
    }
    let mut response = redirect(&next);
    if let Ok(v) = HeaderValue::from_str(&session_cookie(Some(&token), &headers)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// `POST /logout`: clears the session cookie.
pub(crate) async fn logout(headers: HeaderMap) -> PageResult {
    let mut response = redirect("/login");
    if let Ok(v) = HeaderValue::from_str(&session_cookie(None, &headers)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}
