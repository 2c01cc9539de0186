//! The middleware around every request: its id, a structured log line, metrics, and what
//! happens to a body the handler left unread (`connection: close`, after a lingering read).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::state::AppState;

/// Most bytes of a refused request's body read and thrown away before its connection closes.
/// A client that writes its whole body before reading (Python's `http.client`, `requests`)
/// would otherwise get a connection reset instead of the answer; a longer body still does.
pub(crate) const LINGER_BYTES: usize = 32 * 1024 * 1024;

/// Longest time spent reading and throwing away a refused request's body.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(5);

/// Request id, structured log line and metrics for every request.
pub(crate) async fn observe(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().as_str().to_owned();
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert("x-request-id", v);
    }
    // A request refused before its body was read (401, 403, 413, …) leaves the body on the
    // connection: say so with `connection: close` rather than let the client's next request
    // on it fail, and read the rest of the body while the answer goes out (a bounded lingering
    // close), so that a client still writing it gets the answer instead of a reset.
    let has_body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > 0)
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    // A client that waits for `100 Continue` sends no body after a refusal: nothing to drain.
    let expects_continue = req.headers().contains_key(header::EXPECT);
    let body_read = Arc::new(AtomicBool::new(false));
    let unread = Arc::new(Mutex::new(None));
    let req = req.map(|body| {
        Body::new(TrackedBody {
            inner: body,
            done: Arc::clone(&body_read),
            unread: Arc::clone(&unread),
        })
    });
    let span = tracing::info_span!("request", request_id = %id, %method, %route);
    let mut response = next.run(req).instrument(span.clone()).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    state.metrics.request(&method, &route, status, seconds);
    span.in_scope(|| {
        tracing::info!(
            status,
            latency_us = (seconds * 1e6) as u64,
            "request finished"
        )
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    if has_body && !body_read.load(Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        let rest = unread.lock().ok().and_then(|mut u| u.take());
        if let (Some(rest), false) = (rest, expects_continue) {
            tokio::spawn(linger(rest));
        }
    }
    response
}

/// Reads and throws away the rest of a refused request's body, at most [`LINGER_BYTES`] for at
/// most [`LINGER_TIME`]. The connection closes once the body is read or dropped.
async fn linger(body: Body) {
    crate::wire::discard_body(body, LINGER_BYTES as u64, LINGER_TIME).await;
}

/// A request body that records when it has been read to the end, and hands what is left of
/// it to `unread` when the handler drops it before.
struct TrackedBody {
    inner: Body,
    done: Arc<AtomicBool>,
    unread: Arc<Mutex<Option<Body>>>,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            self.done.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        if !self.done.load(Ordering::Relaxed) {
            if let Ok(mut unread) = self.unread.lock() {
                *unread = Some(std::mem::take(&mut self.inner));
            }
        }
    }
}

/// A client's request id is kept when it is 1–128 visible ASCII characters.
fn valid_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A new request id: 32 hex digits, the first 12 the milliseconds since 1970 and the rest 80
/// random bits (as in UUIDv7). Ids made later sort later, so the usage events and prediction log
/// keyed by them grow their indexes at one end (a few pages written per commit rather than
/// one at random per request).
fn new_request_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let random = rand::random::<u128>() & ((1 << 80) - 1);
    format!("{:012x}{random:020x}", millis & ((1 << 48) - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert!(valid_request_id("abc-123"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("a b"));
        assert!(!valid_request_id(&"x".repeat(129)));
        let (a, b) = (new_request_id(), new_request_id());
        assert_eq!((a.len(), b.len()), (32, 32));
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()) && valid_request_id(&a));
        assert_ne!(a, b);
        // Time first: an id made a few milliseconds later sorts after.
        std::thread::sleep(std::time::Duration::from_millis(3));
        assert!(new_request_id()[..12] > a[..12]);
    }
}
