//! Read-only control-API routes about the daemon itself: the configuration
//! it runs with (`GET /v1/config`) and the webhook paths its processes
//! registered (`GET /v1/webhooks`).

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;

use crate::api::{ConfigReply, WebhookInfo};
use crate::server::AppState;

/// The configuration loaded at start, secrets masked, with its digest.
pub(crate) async fn config(State(s): State<AppState>) -> Json<ConfigReply> {
    let file = s.paths.config();
    Json(ConfigReply {
        config: s.cfg.shown(),
        digest: s.cfg.digest(),
        file_present: s.file_present,
        file,
        loaded_at_ms: s.started_at_ms,
    })
}

#[derive(Deserialize)]
pub(crate) struct WebhooksQuery {
    #[serde(default)]
    secrets: Option<String>,
}

/// Registered paths with owner and URL; secrets only with `?secrets=1`.
pub(crate) async fn webhooks(State(s): State<AppState>, Query(q): Query<WebhooksQuery>) -> Json<Vec<WebhookInfo>> {
    let show = matches!(q.secrets.as_deref(), Some("1" | "true" | "yes"));
    Json(
        s.kernel
            .webhook_routes()
            .into_iter()
            .map(|r| WebhookInfo { path: r.path, pid: r.pid, url: r.url, secret: show.then_some(r.secret) })
            .collect(),
    )
}
