//! Request routing of the exporter's HTTP server, as a pure function: the server (hyper) parses
//! the request, this decides what it gets. Kept here so the rule is unit-tested and fuzzable
//! without a socket.

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/metrics`: the exposition.
    Metrics,
    /// `/`: a page linking to it.
    Index,
    /// Any other path (404).
    NotFound,
    /// A method other than GET or HEAD (405, `Allow: GET, HEAD`).
    MethodNotAllowed,
}

/// Route a request by method and request target (a query string is ignored).
pub fn route(method: &str, target: &str) -> Route {
    if method != "GET" && method != "HEAD" {
        return Route::MethodNotAllowed;
    }
    match target.split('?').next().unwrap_or_default() {
        "/metrics" => Route::Metrics,
        "/" => Route::Index,
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("GET", "/metrics"), Route::Metrics);
        assert_eq!(route("GET", "/metrics?name[]=x"), Route::Metrics);
        assert_eq!(route("HEAD", "/"), Route::Index);
        assert_eq!(route("GET", "/other"), Route::NotFound);
        assert_eq!(route("HEAD", "/other"), Route::NotFound);
        assert_eq!(route("POST", "/metrics"), Route::MethodNotAllowed);
        assert_eq!(route("get", "/metrics"), Route::MethodNotAllowed);
        assert_eq!(route("GET", ""), Route::NotFound);
        assert_eq!(route("GET", "\u{0}/metrics"), Route::NotFound);
    }
}
