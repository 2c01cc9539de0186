//! The JSON wire: JSON responses and [`ApiError`] as `{"error": …}`, reading a request body
//! under the size limit, and the checks shared by the request parsers.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::state::Limits;

/// A JSON response with the given status.
pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response {
    bytes_response(status, value.to_string().into_bytes().into())
}

/// A typed value as a JSON response with the given status (500 if it cannot be encoded).
pub(crate) fn typed_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => bytes_response(status, body.into()),
        Err(e) => ApiError::internal(format!("cannot encode the response: {e}")).into_response(),
    }
}

/// Bytes that are already JSON as a response with the given status.
pub(crate) fn bytes_response(status: StatusCode, body: Bytes) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A whole HTML page (an evaluation report) as a 200 response.
pub(crate) fn html_response(html: String) -> Response {
    let mut response = (StatusCode::OK, html).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// Adds `(name, value)` headers to a response (values that are not valid headers are left out).
pub(crate) fn add_headers(response: &mut Response, headers: &[(&'static str, String)]) {
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(*name, value);
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_response(self.status, &self.body());
        let headers = response.headers_mut();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        add_headers(&mut response, &self.headers);
        response
    }
}

/// Reads and throws away what is left of a refused request's body, at most `max_bytes` for at
/// most `max_time`, so that a client still writing it reads the answer instead of a reset.
pub(crate) async fn discard_body(mut body: Body, max_bytes: u64, max_time: std::time::Duration) {
    let drain = async {
        let mut read = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |b| b.len() as u64);
            if read > max_bytes {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(max_time, drain).await;
}

/// Checks the content type and reads at most `max_body_bytes` of body.
pub(crate) async fn read_json_body(
    limits: &Limits,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "the body must be JSON with 'Content-Type: application/json' (got '{content_type}')"
            ),
        ));
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the body is larger than {} bytes; send fewer texts per request",
                limits.max_body_bytes
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limits.max_body_bytes).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(ApiError::invalid(format!("cannot read the body: {e}"))),
    }
}

/// The body as a JSON object whose keys are all in `fields`.
pub(crate) fn parse_object(
    bytes: &[u8],
    fields: &[&str],
    example: &str,
) -> Result<Map<String, Value>, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_utf8",
            format!(
                "the body is not valid UTF-8 (bad byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(obj) = value else {
        return Err(ApiError::invalid(format!(
            "the body must be a JSON object such as {example}"
        )));
    };
    if let Some(key) = obj.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(ApiError::invalid(format!(
            "unknown field '{key}'; the fields are {}",
            fields.join(", ")
        ))
        .param(key.clone()));
    }
    Ok(obj)
}

/// The required string field `name`.
pub(crate) fn required_string(
    obj: &mut Map<String, Value>,
    name: &str,
) -> Result<String, ApiError> {
    match obj.remove(name) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => {
            Err(ApiError::invalid(format!("'{name}' is required")).param(name))
        }
        Some(_) => Err(ApiError::invalid(format!("'{name}' must be a string")).param(name)),
    }
}

/// Checks one text against the character limit and for NUL characters; `param` names it.
pub(crate) fn check_text(limits: &Limits, s: &str, param: &str) -> Result<(), ApiError> {
    if s.len() > limits.max_chars {
        let chars = s.chars().count();
        if chars > limits.max_chars {
            return Err(ApiError::unprocessable(
                "input_too_long",
                format!(
                    "{param} has {chars} characters; the limit is {}",
                    limits.max_chars
                ),
            )
            .param(param));
        }
    }
    if s.contains('\0') {
        return Err(ApiError::unprocessable(
            "invalid_input",
            format!("{param} contains a NUL character"),
        )
        .param(param));
    }
    Ok(())
}
