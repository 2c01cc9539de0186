//! `POST /v1/classify` and `POST /v1/explain`: the JSON requests parsed and validated into
//! the service's typed requests, and its typed answers encoded as JSON.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;

use crate::access::request_id;
use crate::error::ApiError;
use crate::service::{self, Call, ClassifyRequest, Deadline, ExplainRequest};
use crate::state::{AppState, Limits};
use crate::wire::{
    add_headers, check_text, parse_object, read_json_body, required_string, typed_response,
};

/// `POST /v1/classify`: the predictions of the texts (with token attributions when asked).
pub(crate) async fn classify(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers).await?;
    let request_id = request_id(&headers);
    let deadline = Deadline::after(state.limits.timeout);
    let (bytes, mut req) = deadline
        .run(async {
            let bytes = read_json_body(&state.limits, &headers, body).await?;
            let req = parse_classify(&state.limits, &bytes)?;
            Ok((bytes, req))
        })
        .await?;
    req.log = req.log || crate::feedback::sampled(request_id, state.log_rate_of(&req.model));
    let call = Call {
        caller: &caller,
        request_id,
        body: &bytes,
        deadline,
    };
    let served = service::classify(&state, &call, req).await?;
    let mut response = typed_response(StatusCode::OK, &served.response);
    add_headers(&mut response, &served.limit_headers);
    if let Some(ok) = served.logged {
        response.headers_mut().insert(
            "x-prediction-logged",
            HeaderValue::from_static(if ok { "true" } else { "false" }),
        );
    }
    Ok(response)
}

/// `POST /v1/explain`: the same explanation as `flywheel explain --json`, computed on the
/// inference pool.
pub(crate) async fn explain(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers).await?;
    let deadline = Deadline::after(state.limits.timeout);
    let (bytes, req) = deadline
        .run(async {
            let bytes = read_json_body(&state.limits, &headers, body).await?;
            let req = parse_explain(&state.limits, &bytes)?;
            Ok((bytes, req))
        })
        .await?;
    let call = Call {
        caller: &caller,
        request_id: request_id(&headers),
        body: &bytes,
        deadline,
    };
    let served = service::explain(&state, &call, req).await?;
    let mut response = typed_response(StatusCode::OK, &served.response);
    add_headers(&mut response, &served.limit_headers);
    Ok(response)
}

/// Parses and validates a classification request.
fn parse_classify(limits: &Limits, bytes: &[u8]) -> Result<ClassifyRequest, ApiError> {
    let mut obj = parse_object(
        bytes,
        &["model", "inputs", "top_k", "explain", "log"],
        "{\"model\": \"NAME\", \"inputs\": [\"text\"]}",
    )?;
    let model = required_string(&mut obj, "model")?;
    let inputs = match obj.remove("inputs") {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => {
            return Err(ApiError::invalid("'inputs' is required").param("inputs"))
        }
        Some(_) => {
            return Err(ApiError::invalid("'inputs' must be an array of strings").param("inputs"))
        }
    };
    if inputs.is_empty() {
        return Err(ApiError::invalid("'inputs' must hold at least one text").param("inputs"));
    }
    if inputs.len() > limits.max_inputs {
        return Err(ApiError::unprocessable(
            "too_many_inputs",
            format!(
                "{} inputs in one request; the limit is {}: split the request",
                inputs.len(),
                limits.max_inputs
            ),
        )
        .param("inputs"));
    }
    let mut texts = Vec::with_capacity(inputs.len());
    for (i, v) in inputs.into_iter().enumerate() {
        let Value::String(s) = v else {
            return Err(ApiError::invalid(format!("inputs[{i}] must be a string"))
                .param(format!("inputs[{i}]")));
        };
        check_text(limits, &s, &format!("inputs[{i}]"))?;
        texts.push(s);
    }
    let top_k = match obj.remove("top_k") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(k) if k >= 1 => Some(usize::try_from(k).unwrap_or(usize::MAX)),
            _ => return Err(ApiError::invalid("'top_k' must be a positive integer").param("top_k")),
        },
    };
    let explain = match obj.remove("explain") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            return Err(ApiError::invalid("'explain' must be true or false").param("explain"))
        }
    };
    let log = match obj.remove("log") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(ApiError::invalid("'log' must be true or false").param("log")),
    };
    Ok(ClassifyRequest {
        model,
        inputs: texts,
        top_k,
        explain,
        log,
    })
}

/// Parses and validates an explanation request.
fn parse_explain(limits: &Limits, bytes: &[u8]) -> Result<ExplainRequest, ApiError> {
    let mut obj = parse_object(
        bytes,
        &["model", "input", "label"],
        "{\"model\": \"NAME\", \"input\": \"text\"}",
    )?;
    let model = required_string(&mut obj, "model")?;
    let input = required_string(&mut obj, "input")?;
    if input.trim().is_empty() {
        return Err(ApiError::invalid("'input' is empty: give the text to explain").param("input"));
    }
    check_text(limits, &input, "input")?;
    let label = match obj.remove("label") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(ApiError::invalid("'label' must be a string").param("label")),
    };
    Ok(ExplainRequest {
        model,
        input,
        label,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> Limits {
        Limits {
            max_inputs: 3,
            max_chars: 5,
            max_body_bytes: 1000,
            timeout: Duration::from_secs(1),
        }
    }

    fn err(body: &str) -> ApiError {
        match parse_classify(&limits(), body.as_bytes()) {
            Ok(r) => panic!("accepted {body}: {r:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn parses_a_valid_request() {
        let r = parse_classify(
            &limits(),
            br#"{"model":"m","inputs":["a","bb"],"top_k":2,"explain":false}"#,
        )
        .unwrap();
        assert_eq!(r.model, "m");
        assert_eq!(r.inputs, vec!["a", "bb"]);
        assert_eq!(r.top_k, Some(2));
        assert!(!r.explain);
    }

    #[test]
    fn rejects_bad_requests_with_the_right_kind_and_param() {
        let cases: &[(&str, u16, &str, Option<&str>)] = &[
            ("{", 400, "invalid_json", None),
            ("[]", 400, "invalid_request", None),
            (r#"{"inputs":["a"]}"#, 400, "invalid_request", Some("model")),
            (
                r#"{"model":1,"inputs":["a"]}"#,
                400,
                "invalid_request",
                Some("model"),
            ),
            (
                r#"{"model":"m","inputs":"a"}"#,
                400,
                "invalid_request",
                Some("inputs"),
            ),
            (
                r#"{"model":"m","inputs":[]}"#,
                400,
                "invalid_request",
                Some("inputs"),
            ),
            (
                r#"{"model":"m","inputs":["a",2]}"#,
                400,
                "invalid_request",
                Some("inputs[1]"),
            ),
            (
                r#"{"model":"m","inputs":["a","b","c","d"]}"#,
                422,
                "too_many_inputs",
                Some("inputs"),
            ),
            (
                r#"{"model":"m","inputs":["a","éééééé"]}"#,
                422,
                "input_too_long",
                Some("inputs[1]"),
            ),
            (
                r#"{"model":"m","inputs":["a\u0000"]}"#,
                422,
                "invalid_input",
                Some("inputs[0]"),
            ),
            (
                r#"{"model":"m","inputs":["a"],"top_k":0}"#,
                400,
                "invalid_request",
                Some("top_k"),
            ),
            (
                r#"{"model":"m","inputs":["a"],"top_k":"1"}"#,
                400,
                "invalid_request",
                Some("top_k"),
            ),
            (
                r#"{"model":"m","inputs":["a"],"extra":1}"#,
                400,
                "invalid_request",
                Some("extra"),
            ),
        ];
        for (body, status, kind, param) in cases {
            let e = err(body);
            assert_eq!(e.status.as_u16(), *status, "{body}: {e}");
            assert_eq!(e.kind, *kind, "{body}: {e}");
            assert_eq!(e.param.as_deref(), *param, "{body}: {e}");
        }
    }

    #[test]
    fn parses_and_rejects_explain_requests() {
        let r = parse_explain(
            &limits(),
            r#"{"model":"m","input":"ééé","label":"pos"}"#.as_bytes(),
        )
        .unwrap();
        assert_eq!(
            (r.model.as_str(), r.input.as_str(), r.label.as_deref()),
            ("m", "ééé", Some("pos"))
        );
        let r = parse_explain(&limits(), br#"{"model":"m","input":"a","label":null}"#).unwrap();
        assert_eq!(r.label, None);
        let cases: &[(&str, u16, &str, Option<&str>)] = &[
            ("{", 400, "invalid_json", None),
            (r#"{"model":"m"}"#, 400, "invalid_request", Some("input")),
            (
                r#"{"model":"m","input":""}"#,
                400,
                "invalid_request",
                Some("input"),
            ),
            (
                r#"{"model":"m","input":" \n"}"#,
                400,
                "invalid_request",
                Some("input"),
            ),
            (
                r#"{"model":"m","input":["a"]}"#,
                400,
                "invalid_request",
                Some("input"),
            ),
            (r#"{"input":"a"}"#, 400, "invalid_request", Some("model")),
            (
                r#"{"model":"m","input":"a","label":1}"#,
                400,
                "invalid_request",
                Some("label"),
            ),
            (
                r#"{"model":"m","inputs":["a"]}"#,
                400,
                "invalid_request",
                Some("inputs"),
            ),
            (
                r#"{"model":"m","input":"éééééé"}"#,
                422,
                "input_too_long",
                Some("input"),
            ),
            (
                r#"{"model":"m","input":"a\u0000"}"#,
                422,
                "invalid_input",
                Some("input"),
            ),
        ];
        for (body, status, kind, param) in cases {
            let e = parse_explain(&limits(), body.as_bytes()).unwrap_err();
            assert_eq!(e.status.as_u16(), *status, "{body}: {e}");
            assert_eq!(e.kind, *kind, "{body}: {e}");
            assert_eq!(e.param.as_deref(), *param, "{body}: {e}");
        }
    }

    #[test]
    fn five_multibyte_chars_fit_a_five_char_limit() {
        assert!(
            parse_classify(&limits(), r#"{"model":"m","inputs":["ééééé"]}"#.as_bytes()).is_ok()
        );
    }

    #[test]
    fn invalid_utf8_is_a_400() {
        let e = parse_classify(&limits(), b"{\"model\":\"m\",\"inputs\":[\"\xff\"]}").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.kind, "invalid_utf8");
    }
}
