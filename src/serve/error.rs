//! Error answers: a status and a JSON body saying what was wrong, where, and what to do.
//!
//! Anything the client can fix is a 4xx that names the line and column (CSV) or the field
//! (JSON); a 5xx only ever means the server failed, and its body says nothing of internals.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::InputError;

/// An error answer; boxed, so that `Result<_, ApiError>` stays one word on the happy path.
#[derive(Debug)]
pub struct ApiError(Box<Problem>);

/// What an error answer says.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(skip)]
    pub status: StatusCode,
    pub problem: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The JSON field at fault, e.g. `rows[3].URL_Length`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_columns: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_columns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Close the connection after answering (the rest of the body was not read).
    #[serde(skip)]
    pub close: bool,
}

impl std::ops::Deref for ApiError {
    type Target = Problem;
    fn deref(&self) -> &Problem {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut Problem {
        &mut self.0
    }
}

impl ApiError {
    pub fn new(status: StatusCode, problem: impl Into<String>) -> ApiError {
        ApiError(Box::new(Problem {
            status,
            problem: problem.into(),
            line: None,
            column: None,
            field: None,
            missing_columns: Vec::new(),
            extra_columns: Vec::new(),
            hint: None,
            close: false,
        }))
    }

    pub fn bad_request(problem: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, problem)
    }

    pub fn hint(mut self, hint: impl Into<String>) -> ApiError {
        self.hint = Some(hint.into());
        self
    }

    pub fn closing(mut self) -> ApiError {
        self.close = true;
        self
    }

    /// A server failure: logged in full, answered without details.
    pub fn internal(error: &anyhow::Error) -> ApiError {
        tracing::error!(error = format!("{error:#}"), "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the server failed to answer; see its log")
    }

    /// An anyhow error from the library: the client's fault if it is an [`InputError`].
    pub fn from_anyhow(error: anyhow::Error) -> ApiError {
        match error.downcast::<InputError>() {
            Ok(input) => input.into(),
            Err(error) => ApiError::internal(&error),
        }
    }
}

impl From<InputError> for ApiError {
    fn from(error: InputError) -> ApiError {
        let mut answer = ApiError::bad_request(error.problem);
        (answer.line, answer.column, answer.hint) = (error.line, error.column, error.hint);
        answer
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a Problem,
        }
        let body = serde_json::to_string(&Body { error: &self.0 }).expect("an error serialises");
        let mut response = (self.status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if self.close {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_are_bad_requests_that_keep_their_location() {
        let input = InputError::new("`x` is not an integer").line(3).column("URL_Length").hint("use -1, 0 or 1");
        let error = ApiError::from_anyhow(input.into());
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        let json = serde_json::to_value(&*error).unwrap();
        assert_eq!(json["line"], 3);
        assert_eq!(json["column"], "URL_Length");
        assert!(json.get("field").is_none() && json.get("extra_columns").is_none());
    }

    #[test]
    fn other_errors_are_server_errors_without_details() {
        let error = ApiError::from_anyhow(anyhow::anyhow!("disk /secret/path full"));
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!error.problem.contains("secret"));
    }
}
