//! The OpenAI-compatible embedder against a loopback axum server speaking the
//! `/v1/embeddings` wire format: request shape, order by `index`, bearer
//! auth, and clear errors for a wrong dimension, an HTTP error and an
//! unreachable endpoint.

use std::sync::{Arc, Mutex};

use aos_memory::{Embedder, MemoryError, OpenAiEmbedder, OpenAiEmbedderConfig};
use axum::{extract::State, http::HeaderMap, routing::post, Json, Router};
use serde_json::{json, Value};

type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

async fn embeddings(State(seen): State<Seen>, headers: HeaderMap, Json(body): Json<Value>) -> Result<Json<Value>, (axum::http::StatusCode, String)> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    seen.lock().unwrap().push((auth, body.clone()));
    if body["model"] == "broken" {
        return Err((axum::http::StatusCode::INTERNAL_SERVER_ERROR, "model exploded".into()));
    }
    let dim = if body["model"] == "wrong-dim" { 2 } else { 3 };
    let inputs = body["input"].as_array().unwrap();
    // Answer in reverse order with explicit indexes, as servers may.
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(i, t)| {
            let len = t.as_str().unwrap().len() as f32;
            let v: Vec<f32> = (0..dim).map(|d| len + d as f32).collect();
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    Ok(Json(json!({"object": "list", "data": data, "model": body["model"]})))
}

async fn server() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new().route("/v1/embeddings", post(embeddings)).with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}/v1"), seen)
}

fn cfg(base_url: &str, model: &str) -> OpenAiEmbedderConfig {
    OpenAiEmbedderConfig {
        base_url: base_url.into(),
        model: model.into(),
        dimension: 3,
        api_key: Some("sk-test".into()),
        timeout_secs: 5,
    }
}

#[tokio::test]
async fn embeds_in_order_with_auth_and_reports_errors() {
    let (url, seen) = server().await;
    let e = OpenAiEmbedder::new(cfg(&url, "m"));
    let out = e.embed(vec!["a".into(), "abcd".into()]).await.unwrap();
    assert_eq!(out, vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]]);
    let (auth, body) = seen.lock().unwrap()[0].clone();
    assert_eq!(auth.as_deref(), Some("Bearer sk-test"));
    assert_eq!(body, json!({"model": "m", "input": ["a", "abcd"]}));

    let err = OpenAiEmbedder::new(cfg(&url, "wrong-dim")).embed(vec!["x".into()]).await.unwrap_err();
    assert!(err.to_string().contains("2-dimensional") && err.to_string().contains("3"), "{err}");
    let err = OpenAiEmbedder::new(cfg(&url, "broken")).embed(vec!["x".into()]).await.unwrap_err();
    assert!(matches!(&err, MemoryError::Backend(m) if m.contains("500") && m.contains("model exploded")), "{err}");
    let err = OpenAiEmbedder::new(cfg("http://127.0.0.1:9/v1", "m")).embed(vec!["x".into()]).await.unwrap_err();
    assert!(matches!(&err, MemoryError::Unavailable(m) if m.contains("127.0.0.1:9")), "{err}");
}
