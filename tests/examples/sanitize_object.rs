//! Runs the sanitizer Lambda's handler once, in-process, on one S3 object, with the same
//! environment the Lambda reads (see README, "Configuration"). For measuring it on big
//! objects (`/usr/bin/time -v`) and for trying it against moto without a Lambda emulator.
//!
//! usage: sanitize_object BUCKET KEY

use lambda_runtime::{Context, LambdaEvent};
use sluice_aws::setup::{database_config, load_pipeline_config};
use sluice_aws::{Clients, ObjectStore, Queue};
use sluice_db::{migrate, Db, Store};
use sluice_sanitizer::{handle, Deps, Settings};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bucket, key] = args.as_slice() else {
        return Err("usage: sanitize_object BUCKET KEY".into());
    };
    let settings = Settings::from_env()?;
    let clients = Clients::from_env().await;
    let objects = ObjectStore::new(clients.s3.clone());
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
    let deps = Deps {
        config: load_pipeline_config(&settings.pipeline_config, &objects).await?,
        store: Store::new(db),
        objects,
        queue: Queue::new(clients.sqs, settings.transform_queue_url),
        clean_bucket: settings.clean_bucket,
    };
    let event = serde_json::json!({"Records": [{"eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": sluice_e2e::encode_key(key)}}}]});
    let started = std::time::Instant::now();
    let outcomes = handle(LambdaEvent::new(event, Context::default()), &deps).await?;
    println!("{}", serde_json::to_string(&outcomes)?);
    eprintln!("took {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}
