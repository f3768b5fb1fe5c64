//! `sluice dashboard` keeps its door shut: no token 401, a Host it does not serve 421 (what a
//! DNS-rebinding page sends), the printed link lets a browser in through a cookie, and a
//! script's bearer token works. The guard turns requests away before any query, so the
//! database the dashboard is given need not exist.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use reqwest::header::{AUTHORIZATION, HOST, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::StatusCode;

struct Dashboard {
    child: Child,
    /// `http://127.0.0.1:PORT/?token=...`, as printed.
    link: String,
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(token: Option<&str>) -> Dashboard {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(["dashboard", "--listen", "127.0.0.1:0"])
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:9/none")
        .env_remove("SLUICE_DLQ_URLS")
        .env_remove("SLUICE_CLEAN_BUCKET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    match token {
        Some(token) => command.env("SLUICE_DASHBOARD_TOKEN", token),
        None => command.env_remove("SLUICE_DASHBOARD_TOKEN"),
    };
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let link = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no link in {line:?}"))
        .to_string();
    Dashboard { child, link }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn no_token_is_401_another_host_421_and_the_printed_link_lets_a_browser_in() {
    let dashboard = start(None);
    let link = reqwest::Url::parse(&dashboard.link).unwrap();
    let token = link
        .query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.to_string())
        .expect("a token in the link");
    assert!(token.len() >= 32, "{token}");
    let base = format!("http://{}", link.authority());
    let http = client();

    let bare = http.get(format!("{base}/style.css")).send().await.unwrap();
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    assert!(bare.text().await.unwrap().contains("needs its token"));

    let wrong = http
        .get(format!("{base}/style.css"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // A rebinding page's request: the right address, the attacker's name, even the token.
    let port = link.port().unwrap();
    let rebound = http
        .get(format!("{base}/style.css"))
        .header(HOST, format!("attacker.example:{port}"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), StatusCode::MISDIRECTED_REQUEST);
    assert!(rebound.text().await.unwrap().contains("--allow-host"));

    // The printed link: a cookie, and the page again without the token in the address.
    let entered = http
        .get(format!("{base}/style.css?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(entered.status(), StatusCode::SEE_OTHER);
    assert_eq!(entered.headers()[LOCATION], "/style.css");
    let cookie = entered.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    let styled = http
        .get(format!("{base}/style.css"))
        .header(reqwest::header::COOKIE, pair)
        .send()
        .await
        .unwrap();
    assert_eq!(styled.status(), StatusCode::OK);

    // localhost is the same machine's name for it.
    let scripted = http
        .get(format!("http://localhost:{port}/style.css"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(scripted.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_token_from_the_environment_is_not_printed_and_is_the_only_one() {
    let dashboard = start(Some("the-operators-own-token-0123456789"));
    assert!(!dashboard.link.contains("token="), "{}", dashboard.link);
    let base = dashboard.link.trim_end_matches('/').to_string();
    let http = client();
    let with = |token: &'static str| {
        http.get(format!("{base}/style.css"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(
        with("the-operators-own-token-0123456789")
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        with("the-operators-own-token-012345678")
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}
