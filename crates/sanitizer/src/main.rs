//! The sanitizer Lambda: wiring only. Environment -> settings -> clients -> `run`.

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use sluice_aws::setup::{database_config, init_tracing, load_pipeline_config};
use sluice_aws::{Clients, ObjectStore, Queue};
use sluice_db::{migrate, Db, Store};
use sluice_sanitizer::{handle, Deps, Settings};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let deps = match deps().await {
        Ok(deps) => deps,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "sanitizer cannot start");
            return Err(e.into());
        }
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| handle(event, &deps))).await
}

async fn deps() -> anyhow::Result<Deps> {
    let settings = Settings::from_env()?;
    let clients = Clients::from_env().await;
    let objects = ObjectStore::new(clients.s3.clone());
    let config = load_pipeline_config(&settings.pipeline_config, &objects).await?;
    let db = Db::new(
        database_config(
            settings.database_url.as_deref(),
            settings.database_secret.as_deref(),
            settings.db_ca_file.as_deref(),
            &clients,
        )
        .await?,
    );
    if settings.migrate_on_start {
        migrate(&db).await?;
    }
    Ok(Deps {
        config,
        store: Store::new(db),
        objects,
        queue: Queue::new(clients.sqs, settings.transform_queue_url),
        clean_bucket: settings.clean_bucket,
    })
}
