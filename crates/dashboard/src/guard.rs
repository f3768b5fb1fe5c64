//! The door of the dashboard `sluice dashboard` serves on a machine: a token, and a Host check.
//! Without them any web page open in a browser on the same machine could read the dashboard
//! through DNS rebinding (a name of the attacker's that resolves to 127.0.0.1): file names,
//! uploaders, API answers. The Lambda behind its Function URL has AWS_IAM in front instead.
//!
//! A request gets in with the token as `Authorization: Bearer <token>` or in the cookie that
//! `/?token=<token>` sets (HttpOnly, SameSite=Strict), and only under a Host the dashboard
//! serves: a rebinding page's requests carry its own name, and are turned away with 421
//! before the token is even looked at.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

/// Who may come in.
#[derive(Debug, Clone)]
pub struct Guard {
    token: String,
    /// Host header values served (`host:port`, lowercase).
    hosts: Vec<String>,
    cookie: String,
}

impl Guard {
    /// A guard for a dashboard listening on `listen` (the bound address, with its real port):
    /// its own address is a Host it serves, and so are `localhost` and the loopback addresses
    /// when it listens on loopback or on every address; `more_hosts` are other names it is
    /// reached by (`dash.example.internal:8080`).
    pub fn new(token: impl Into<String>, listen: SocketAddr, more_hosts: &[String]) -> Self {
        let port = listen.port();
        let mut names = vec![host_of(listen)];
        if listen.ip().is_loopback() || listen.ip().is_unspecified() {
            names.extend(["localhost", "127.0.0.1", "[::1]"].map(|n| format!("{n}:{port}")));
        }
        names.extend(more_hosts.iter().map(|h| h.trim().to_ascii_lowercase()));
        let mut hosts: Vec<String> = Vec::new();
        for name in names {
            if !hosts.contains(&name) {
                hosts.push(name);
            }
        }
        Guard {
            token: token.into(),
            hosts,
            // Cookies are per host, not per port: two dashboards on one machine keep theirs.
            cookie: format!("sluice_dashboard_{port}"),
        }
    }

    /// The Host header values this guard lets in.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// `router` behind this guard.
    pub fn around(self, router: Router) -> Router {
        router.layer(axum::middleware::from_fn_with_state(Arc::new(self), admit))
    }

    fn holds_token(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.cookie)
            .map(|(_, value)| value);
        [bearer, cookie]
            .into_iter()
            .flatten()
            .any(|given| same(given.trim(), &self.token))
    }
}

/// `host:port` as a Host header names it.
fn host_of(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// Compares in time that does not depend on where the first difference is.
fn same(given: &str, token: &str) -> bool {
    let (a, b) = (given.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn admit(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    if !host.as_ref().is_some_and(|h| guard.hosts.contains(h)) {
        let said = host.as_deref().unwrap_or("none");
        let body = format!(
            "This dashboard is not served under the host {said:?}. It answers to: {}. \
             If this is how you reach it, start it with --allow-host {said}.\n",
            guard.hosts.join(", ")
        );
        return (StatusCode::MISDIRECTED_REQUEST, body).into_response();
    }
    if let Some(given) = token_in_query(request.uri()) {
        if same(&given, &guard.token) {
            return enter(&guard, request.uri());
        }
    }
    if guard.holds_token(request.headers()) {
        return next.run(request).await;
    }
    let mut response = (
        StatusCode::UNAUTHORIZED,
        "This dashboard needs its token: open the link `sluice dashboard` printed when it \
         started (http://HOST:PORT/?token=...), or send `Authorization: Bearer <token>`. The \
         token is SLUICE_DASHBOARD_TOKEN when that was set.\n",
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"sluice dashboard\""),
    );
    response
}

fn token_in_query(uri: &Uri) -> Option<String> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "token")
        .map(|(_, value)| value.to_string())
}

/// The token was in the link: keep it in a cookie and show the page without it in the
/// address bar (or in the history, or in a Referer).
fn enter(guard: &Guard, uri: &Uri) -> Response {
    let rest: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.starts_with("token=") && !pair.is_empty())
        .collect();
    let to = match rest.is_empty() {
        true => uri.path().to_string(),
        false => format!("{}?{}", uri.path(), rest.join("&")),
    };
    let cookie = format!(
        "{}={}; HttpOnly; SameSite=Strict; Path=/",
        guard.cookie, guard.token
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let (Ok(location), Ok(cookie)) = (HeaderValue::from_str(&to), HeaderValue::from_str(&cookie))
    {
        headers.insert(header::LOCATION, location);
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_dashboard_answers_to_its_loopback_names_and_the_ones_it_is_given() {
        let guard = Guard::new(
            "t",
            "127.0.0.1:8080".parse().unwrap(),
            &["Dash.Internal:8080".into()],
        );
        assert_eq!(
            guard.hosts(),
            [
                "127.0.0.1:8080",
                "localhost:8080",
                "[::1]:8080",
                "dash.internal:8080"
            ]
        );
        let wide = Guard::new("t", "10.1.2.3:9000".parse().unwrap(), &[]);
        assert_eq!(wide.hosts(), ["10.1.2.3:9000"]);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abd", "abc"));
        assert!(!same("ab", "abc"));
        assert!(!same("", "abc"));
    }
}
