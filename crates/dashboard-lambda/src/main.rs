//! The dashboard Lambda: the same router as `sluice dashboard`, behind a Function URL
//! (`AuthType: AWS_IAM`). Wiring only: environment -> database settings -> router.

use std::sync::Arc;
use std::time::Duration;

use sluice_aws::{Clients, ObjectStore};
use sluice_dashboard::{router, Dlqs, Links, State, ROLE};
use sluice_lambda::init_tracing;
use sluice_lambda::setup::{database_config, iam_db_with, DatabaseSettings};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    let state = match state().await {
        Ok(state) => state,
        Err(e) => {
            tracing::error!(error = %e, "dashboard cannot start");
            return Err(e);
        }
    };
    lambda_http::run(router(Arc::new(state))).await
}

async fn state() -> Result<State, Box<dyn std::error::Error + Send + Sync>> {
    let database = DatabaseSettings::from_env()?;
    let clients = Clients::from_env().await;
    let stale = std::env::var("SLUICE_STALE_AFTER_SECONDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(3600);
    let (dlqs, stale) = (Dlqs::from_env(clients.queues()), Duration::from_secs(stale));
    // On the stack's database it logs in as sluice_dashboard itself, with IAM tokens: a role
    // that may select the dashboard views and nothing else, not a setting of a wider login.
    let state = match &database.iam_user {
        Some(user) => {
            let db = iam_db_with(&database, user, &clients, |c| c.read_only_as(ROLE)).await?;
            State::over(db, dlqs, stale)
        }
        None => {
            let config = database_config(
                database.url.as_deref(),
                database.secret.as_deref(),
                database.ca_file.as_deref(),
                &clients,
            )
            .await?;
            State::new(config, dlqs, stale)
        }
    };
    Ok(state.with_links(Links::from_env(ObjectStore::new(clients.s3.clone()))))
}
