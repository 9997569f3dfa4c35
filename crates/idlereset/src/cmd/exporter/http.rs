//! The exporter's HTTP side, on hyper (HTTP/1.1) over the tokio runtime: `GET /metrics` (the
//! exposition), `GET /` (a link to it), `HEAD` of both, 404 elsewhere, 405 with `Allow` for
//! other methods.
//!
//! The exporter may face a network, so connections are admitted by
//! [`idlereset_linux::admission`] (a global cap, a per-source cap, accept errors survived with a
//! back-off), request heads must arrive within [`HEADER_TIMEOUT`] and fit in [`MAX_HEAD`] bytes,
//! and a connection lives at most [`CONNECTION_LIFETIME`] (idle keep-alive connections are closed
//! then). Request routing is the pure [`route`] (in core, so a fuzz target can call it); each scrape runs on a blocking thread so kernel
//! reads never stall the accept loop.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use idlereset_core::exporter_http::{Route, route};
use idlereset_linux::admission::{self, Admission, Caps, Throttle};
use tokio::net::TcpListener;

use super::State;

/// Time for a client to send a whole request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection's longest life, idle keep-alive included (a scrape reconnects after it).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Largest request head (hyper answers 431 beyond).
pub const MAX_HEAD: usize = 8192;
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const INDEX: &str = "<html><head><title>idlereset exporter</title></head><body><h1>idlereset exporter</h1><p><a href=\"/metrics\">/metrics</a></p></body></html>\n";

/// Connection caps of the exporter's server.
pub fn default_caps() -> Caps {
    Caps {
        max_connections: 256,
        max_per_source: 32,
        max_pending_per_source: 32,
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

/// Answer one request. HEAD gets the GET's headers and no body (hyper drops the body of a HEAD
/// response and keeps its Content-Length).
async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let head_only = req.method() == Method::HEAD;
    let r = match route(req.method().as_str(), req.uri().path()) {
        Route::Metrics if head_only => reply(StatusCode::OK, OPENMETRICS, Bytes::new()),
        Route::Metrics => match tokio::task::spawn_blocking(move || state.scrape()).await {
            Ok(body) => reply(StatusCode::OK, OPENMETRICS, body),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("scrape failed: {e}\n"),
            ),
        },
        Route::Index => reply(StatusCode::OK, "text/html; charset=utf-8", INDEX),
        Route::NotFound => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /metrics\n",
        ),
        Route::MethodNotAllowed => {
            let mut r = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "only GET and HEAD\n",
            );
            r.headers_mut()
                .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
            r
        }
    };
    Ok(r)
}

/// One connection: HTTP/1.1 with keep-alive, closed gracefully at the end of its lifetime.
async fn connection(sock: tokio::net::TcpStream, state: Arc<State>) {
    let svc = hyper::service::service_fn(move |req| handle(req, state.clone()));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD.max(8192));
    let conn = builder.serve_connection(TokioIo::new(sock), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = tokio::time::sleep(CONNECTION_LIFETIME) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(HEADER_TIMEOUT, conn).await;
        }
    }
}

/// Accept connections forever, one task each, within the caps.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    caps: Caps,
) -> anyhow::Result<crate::app::Outcome> {
    let admission = Admission::new(caps);
    let mut backoff = admission::Backoff::default();
    let mut refused = Throttle::default();
    let log = |m: &str| eprintln!("idlereset exporter: {m}");
    loop {
        let (sock, peer) = admission::accept(&listener, &mut backoff, &log).await;
        let Some(slot) = admission.admit(peer.ip()) else {
            if let Some(n) = refused.hit(std::time::Instant::now()) {
                let more = match n {
                    0 => String::new(),
                    n => format!(" ({n} more since the last notice)"),
                };
                eprintln!("idlereset exporter: {peer}: refused: connection limit reached{more}");
            }
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            connection(sock, state).await;
            drop(slot);
        });
    }
}
