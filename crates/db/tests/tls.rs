//! Verified TLS to a database that is not on loopback, and credential rotation, against the
//! TLS-only PostgreSQL that `scripts/test.sh` starts (a certificate for `sluice-db.test`, signed
//! by a CA it makes; `hostaddr=127.0.0.1` reaches it while the name is what TLS verifies).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sluice_db::{Db, DbConfig, Refresh};

fn tls_url() -> String {
    std::env::var("SLUICE_TEST_TLS_DATABASE_URL").expect(
        "SLUICE_TEST_TLS_DATABASE_URL is not set: run the tests with scripts/test.sh, which \
         starts a TLS-only PostgreSQL for them",
    )
}

fn ca_file() -> PathBuf {
    std::env::var_os("SLUICE_TEST_DB_CA_FILE")
        .map(PathBuf::from)
        .expect("SLUICE_TEST_DB_CA_FILE is not set: run the tests with scripts/test.sh")
}

async fn uses_tls(db: &Db) -> bool {
    let client = db.client().await.expect("connects");
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0)
}

#[tokio::test]
async fn a_remote_host_gets_verified_tls_without_asking() {
    // No sslmode in the URL: a non-loopback host gets TLS all the same.
    let config = DbConfig::parse(&tls_url(), Some(&ca_file())).unwrap();
    assert!(config.uses_tls());
    assert!(uses_tls(&Db::new(config)).await);
}

#[tokio::test]
async fn prefer_cannot_fall_back_to_plaintext_for_a_remote_host() {
    let url = format!("{}&sslmode=prefer", tls_url());
    let config = DbConfig::parse(&url, Some(&ca_file())).unwrap();
    assert!(config.uses_tls());
    assert!(uses_tls(&Db::new(config)).await);
}

#[test]
fn plaintext_or_no_ca_for_a_remote_host_is_refused_at_configuration() {
    let url = format!("{}&sslmode=disable", tls_url());
    let err = DbConfig::parse(&url, Some(&ca_file()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sluice-db.test") && err.contains("mandatory"),
        "{err}"
    );
    let err = DbConfig::parse(&tls_url(), None).unwrap_err().to_string();
    assert!(err.contains("SLUICE_DB_CA_FILE"), "{err}");
    let password = tls_url()
        .split(':')
        .nth(2)
        .and_then(|rest| rest.split('@').next())
        .unwrap()
        .to_string();
    assert!(!err.contains(&password), "never print the password: {err}");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let config = DbConfig::parse(
        &tls_url(),
        Some("/etc/ssl/certs/ca-certificates.crt".as_ref()),
    )
    .unwrap();
    let err = Db::new(config)
        .client()
        .await
        .map(|_| ())
        .expect_err("must not connect");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let url = tls_url().replace("sluice-db.test", "other-db.test");
    let config = DbConfig::parse(&url, Some(&ca_file())).unwrap();
    let err = Db::new(config)
        .client()
        .await
        .map(|_| ())
        .expect_err("must not connect");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn a_refused_password_is_read_again_once_before_failing() {
    // A role whose password "rotates": the settings in hand hold the old one.
    let admin = Db::new(DbConfig::parse(&tls_url(), Some(&ca_file())).unwrap());
    let role = format!(
        "rotated_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    admin
        .client()
        .await
        .unwrap()
        .batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD 'new-secret'"))
        .await
        .unwrap();
    let with_password = |password: &str| {
        DbConfig::parse(&tls_url(), Some(&ca_file()))
            .unwrap()
            .with_credentials(&role, password, None, None, Some("postgres"))
            .unwrap()
    };
    let reads = Arc::new(AtomicUsize::new(0));
    let refresh: Refresh = {
        let (reads, fresh) = (reads.clone(), with_password("new-secret"));
        Arc::new(move || {
            reads.fetch_add(1, Ordering::SeqCst);
            let fresh = fresh.clone();
            Box::pin(async move { Ok(fresh) })
        })
    };
    let db = Db::with_refresh(with_password("old-secret"), refresh);
    assert!(uses_tls(&db).await);
    assert_eq!(reads.load(Ordering::SeqCst), 1);

    // A secret that is still wrong after the re-read fails, after exactly one more read.
    let stale: Refresh = {
        let (reads, stale) = (reads.clone(), with_password("still-old"));
        Arc::new(move || {
            reads.fetch_add(1, Ordering::SeqCst);
            let stale = stale.clone();
            Box::pin(async move { Ok(stale) })
        })
    };
    let db = Db::with_refresh(with_password("old-secret"), stale);
    let err = db.client().await.map(|_| ()).expect_err("wrong password");
    assert!(err.to_string().contains("password"), "{err}");
    assert_eq!(reads.load(Ordering::SeqCst), 2);
    admin
        .client()
        .await
        .unwrap()
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
}
