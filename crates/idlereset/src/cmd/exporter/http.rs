//! A deliberately tiny HTTP/1.1 server: `GET /metrics` (the exposition), `GET /` (a link to
//! it), anything else 404 / 405.
//!
//! Why hand-rolled: the exporter answers one kind of request from a Prometheus server, on
//! `Connection: close`, and the workspace has tokio but no HTTP crate; hyper plus its service
//! glue would be a larger dependency than this whole file. Requests are bounded (8 KiB of
//! headers, 10 s to send them), bodies are ignored, and each scrape runs on a blocking thread so
//! the kernel reads never stall the accept loop.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::State;

const MAX_HEAD: usize = 8192;
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Metrics,
    Index,
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// Route a request head (`GET /metrics?x HTTP/1.1\r\n...`).
pub fn route(head: &[u8]) -> Route {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    if method != "GET" && method != "HEAD" {
        return Route::MethodNotAllowed;
    }
    match target.split('?').next().unwrap_or_default() {
        "/metrics" => Route::Metrics,
        "/" => Route::Index,
        _ => Route::NotFound,
    }
}

fn response(status: &str, content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

async fn read_head(sock: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return (!buf.is_empty()).then_some(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Some(buf);
        }
        if buf.len() > MAX_HEAD {
            return Some(buf);
        }
    }
}

async fn handle(mut sock: TcpStream, state: Arc<State>) {
    let Ok(Some(head)) = tokio::time::timeout(READ_TIMEOUT, read_head(&mut sock)).await else {
        return;
    };
    let head_only = head.starts_with(b"HEAD ");
    let reply = match route(&head) {
        _ if head.len() > MAX_HEAD => response(
            "431 Request Header Fields Too Large",
            "text/plain",
            "headers too large\n",
            false,
        ),
        Route::Metrics => {
            let st = state.clone();
            match tokio::task::spawn_blocking(move || st.scrape()).await {
                Ok(body) => response("200 OK", CONTENT_TYPE, &body, head_only),
                Err(e) => response(
                    "500 Internal Server Error",
                    "text/plain",
                    &format!("scrape failed: {e}\n"),
                    false,
                ),
            }
        }
        Route::Index => response(
            "200 OK",
            "text/html; charset=utf-8",
            "<html><head><title>idlereset exporter</title></head><body><h1>idlereset exporter</h1><p><a href=\"/metrics\">/metrics</a></p></body></html>\n",
            head_only,
        ),
        Route::NotFound => response(
            "404 Not Found",
            "text/plain",
            "not found; try /metrics\n",
            false,
        ),
        Route::MethodNotAllowed => {
            response("405 Method Not Allowed", "text/plain", "only GET\n", false)
        }
        Route::BadRequest => response("400 Bad Request", "text/plain", "bad request\n", false),
    };
    let _ = sock.write_all(&reply).await;
    let _ = sock.shutdown().await;
}

/// Accept connections forever, one task each.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
) -> anyhow::Result<crate::app::Outcome> {
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                tokio::spawn(handle(sock, state.clone()));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("idlereset exporter: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(
            route(b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route(b"HEAD / HTTP/1.1\r\n\r\n"), Route::Index);
        assert_eq!(route(b"GET /other HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        assert_eq!(route(b"GET /metrics\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"GET /metrics SPDY/3\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"\xff\xfe"), Route::BadRequest);
    }

    #[test]
    fn response_has_length_and_close() {
        let r =
            String::from_utf8(response("200 OK", "text/plain", "abc", false)).unwrap_or_default();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(r.contains("Content-Length: 3\r\n"));
        assert!(r.contains("Connection: close\r\n"));
        assert!(r.ends_with("\r\n\r\nabc"));
        let h =
            String::from_utf8(response("200 OK", "text/plain", "abc", true)).unwrap_or_default();
        assert!(h.ends_with("\r\n\r\n"));
    }
}
