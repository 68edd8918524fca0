//! GET /: the web page. One file with its styles and script inline (no external assets, so
//! it works offline and under a strict network policy): a CSV upload that shows the
//! predictions table with a download link, and a form scoring one site by its features (the
//! form is built from GET /model's schema, so it follows the served model).

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("page.html");

pub async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], PAGE)
}
