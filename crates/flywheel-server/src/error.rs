//! Errors: [`ServerError`] for starting the server, [`ApiError`] for what a client is told
//! (sent as a response by the `wire` module).

use axum::http::StatusCode;
use serde_json::json;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A model file could not be loaded.
    #[error("model '{name}': {source}")]
    Load {
        /// The model's name.
        name: String,
        /// What went wrong.
        #[source]
        source: Box<flywheel_model::ModelError>,
    },
    /// A setting is unusable.
    #[error("invalid server setting: {0}")]
    Config(String),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The inference thread pool could not be started.
    #[error("cannot start the inference threads: {0}")]
    Pool(#[from] rayon::ThreadPoolBuildError),
    /// The store could not be opened or read at start-up.
    #[error("store: {0}")]
    Store(#[from] flywheel_store::Error),
    /// Serving failed (I/O on the listening socket, runtime start-up).
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// An error answered to a client as `{"error": {"type", "message", "param"}}` with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable kind (`invalid_json`, `model_not_found`, `overloaded`, ...).
    pub kind: &'static str,
    /// What was wrong and what to do, for a person.
    pub message: String,
    /// The request field at fault (`inputs[3]`, `model`, ...), when there is one.
    pub param: Option<String>,
    /// Extra response headers (rate-limit state on a 429, for instance).
    pub headers: Vec<(&'static str, String)>,
    /// The line of an uploaded file at fault, when there is one.
    pub line: Option<u64>,
}

impl ApiError {
    /// An error with the given status, kind and message, and no parameter.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            param: None,
            headers: Vec::new(),
            line: None,
        }
    }

    /// The same error with extra response headers.
    pub fn with_headers(mut self, headers: Vec<(&'static str, String)>) -> Self {
        self.headers.extend(headers);
        self
    }

    /// The same error, naming the request field at fault.
    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// The same error, naming the line of an uploaded file at fault.
    pub fn line(mut self, line: u64) -> Self {
        self.line = Some(line);
        self
    }

    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 422 with the given kind (a well-formed request over a limit or with unusable text).
    pub fn unprocessable(kind: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, kind, message)
    }

    /// 503 `overloaded` (the client should retry later).
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
    }

    /// 500 `internal_error`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut error = json!({"type": self.kind, "message": self.message, "param": self.param});
        if let (Some(line), Some(map)) = (self.line, error.as_object_mut()) {
            map.insert("line".into(), line.into());
        }
        json!({ "error": error })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.kind,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}
