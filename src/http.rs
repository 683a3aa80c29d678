//! The daemon's HTTP listener: `/metrics` (Prometheus text format),
//! `/healthz` (200 when every inbox has been checked recently, 503 with the
//! reasons otherwise) and the offer pages (`/offers/<token>`: GET shows the
//! offer, POST accepts or declines it). Off unless `[http] listen` is set.
//! Metrics and health carry counts and states only; an offer page shows what
//! the offer email shows, never the lead's contact data, and acts only for
//! the agent its signed token names. A GET never changes anything (mail
//! scanners fetch links).

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::offer;
use crate::pipeline::{OfferActError, OfferAction, Pipeline};
use crate::store::OfferRow;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP listener failed: {0}")]
    Serve(std::io::Error),
}

/// Binds the listener (done before the daemon reports ready, so a busy port
/// is a start-up error, not a silent absence).
pub async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    pipeline: Arc<Pipeline>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), HttpError> {
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(health_page))
        .route("/offers/{token}", get(offer_page).post(offer_action))
        .with_state(pipeline);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
        .map_err(HttpError::Serve)
}

async fn metrics_page(State(pipeline): State<Arc<Pipeline>>) -> Response {
    let metrics = pipeline.metrics();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}

async fn health_page(State(pipeline): State<Arc<Pipeline>>) -> Response {
    let health = pipeline.metrics().health(SystemTime::now());
    let status = if health.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::to_string(&health).unwrap_or_else(|_| "{}".to_string());
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The offer a token names and its row, when the token is genuine.
async fn genuine_offer(pipeline: &Pipeline, token: &str) -> Option<OfferRow> {
    let secret = pipeline.offer_secret()?;
    let id: i64 = token.split_once('.')?.0.parse().ok()?;
    let row = pipeline.store().offer(id).await.ok()??;
    offer::verify_token(secret, token, |_| Some(row.agent.clone()))?;
    Some(row)
}

async fn offer_page(
    State(pipeline): State<Arc<Pipeline>>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    let Some(row) = genuine_offer(&pipeline, &token).await else {
        return not_valid();
    };
    let now = crate::store::now();
    let mut body = format!(
        "<h1>Lead #{} offered to {}</h1>{}",
        row.lead_id,
        text(&row.agent),
        offer_facts(&row)
    );
    if row.state == "open" && row.deadline.as_str() > now.as_str() {
        body.push_str(&format!(
            "<p>Accept within <strong>{}</strong> (by {} UTC). Accepting makes you the lead's owner; its contact details follow by email.</p>\
             <form method=\"post\"><button type=\"submit\" name=\"action\" value=\"accept\">Accept this lead</button> \
             <button type=\"submit\" name=\"action\" value=\"decline\">Decline</button></form>",
            text(&crate::admin::time_left(&now, &row.deadline)),
            text(&row.deadline)
        ));
    } else {
        body.push_str(&format!(
            "<p role=\"status\">{}</p>",
            closed_reason(&row, &now)
        ));
    }
    page(StatusCode::OK, "Lead offer", &body)
}

#[derive(serde::Deserialize)]
struct ActionForm {
    action: String,
}

async fn offer_action(
    State(pipeline): State<Arc<Pipeline>>,
    axum::extract::Path(token): axum::extract::Path<String>,
    axum::extract::Form(form): axum::extract::Form<ActionForm>,
) -> Response {
    let Some(row) = genuine_offer(&pipeline, &token).await else {
        return not_valid();
    };
    let action = match form.action.as_str() {
        "accept" => OfferAction::Accept,
        "decline" => OfferAction::Decline,
        _ => {
            return page(
                StatusCode::BAD_REQUEST,
                "Lead offer",
                "<h1>Unknown action</h1><p>Use the Accept or Decline button.</p>",
            );
        }
    };
    match pipeline.act_on_offer(row.id, &row.agent, action).await {
        Ok(_) if action == OfferAction::Accept => page(
            StatusCode::OK,
            "Lead accepted",
            &format!(
                "<h1>You accepted lead #{}</h1><p role=\"status\">It is yours now: its owner and assigned agent. The full contact details are on their way by email.</p>",
                row.lead_id
            ),
        ),
        Ok(_) => page(
            StatusCode::OK,
            "Lead declined",
            &format!(
                "<h1>You declined lead #{}</h1><p role=\"status\">Thank you; it goes to the next agent.</p>",
                row.lead_id
            ),
        ),
        Err(OfferActError::Offer(_)) => {
            // Re-read: the reason it is closed now (taken, expired, already decided).
            let now = crate::store::now();
            let row = pipeline
                .store()
                .offer(row.id)
                .await
                .ok()
                .flatten()
                .unwrap_or(row);
            page(
                StatusCode::CONFLICT,
                "Offer closed",
                &format!(
                    "<h1>This offer is closed</h1><p role=\"status\">{}</p>",
                    closed_reason(&row, &now)
                ),
            )
        }
        Err(OfferActError::Pipeline(e)) => {
            tracing::warn!(message = "Offer action failed.", offer = row.id, error = %e);
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "<h1>Something went wrong</h1><p>Nothing was changed. Please try again in a minute.</p>",
            )
        }
    }
}

fn closed_reason(row: &OfferRow, now: &str) -> String {
    match row.state.as_str() {
        "accepted" => "You accepted this lead; it is yours.".to_string(),
        "declined" => "You declined this offer.".to_string(),
        "taken" => "Another agent accepted this lead first.".to_string(),
        "expired" => "The time to accept this offer has passed.".to_string(),
        "open" if row.deadline.as_str() <= now => {
            "The time to accept this offer has passed.".to_string()
        }
        other => format!("This offer is {}.", text(other)),
    }
}

fn offer_facts(row: &OfferRow) -> String {
    let mut rows = vec![("Source", row.source.clone())];
    if let Some(p) = &row.property {
        rows.push(("Property", p.clone()));
    }
    let mut html = String::from("<table>");
    for (label, value) in rows {
        html.push_str(&format!(
            "<tr><th scope=\"row\">{label}</th><td>{}</td></tr>",
            text(&value)
        ));
    }
    html.push_str("</table>");
    html
}

fn not_valid() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Link not valid",
        "<h1>This link is not valid</h1><p>It may be mistyped or not from leadmail. Offers are in your email, or ask your brokerage's admin.</p>",
    )
}

fn text(s: &str) -> String {
    html_escape::encode_text(s).into_owned()
}

/// A small, accessible page: language, title, a readable width, real buttons.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title} \u{2014} leadmail</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}th{{text-align:left;padding-right:1rem}}button{{font-size:1.1rem;padding:.6rem 1.2rem;margin:.5rem .5rem 0 0}}</style></head>\
         <body><main>{body}</main></body></html>"
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
        .into_response()
}
