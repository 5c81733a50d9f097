//! The HTTP API under `/api/v1` (described by `/api/v1/openapi.json`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};

use crate::error::Result;
use crate::operator::Operator;
use crate::server::AppState;

/// The API's routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/openapi.json", get(openapi))
}

/// The operator the presented token stands for.
async fn whoami(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<Operator>> {
    state.operator(&headers).map(Json)
}

async fn openapi() -> Json<serde_json::Value> {
    Json(
        serde_json::from_str(include_str!("openapi.json"))
            .expect("the bundled OpenAPI document is JSON"),
    )
}
