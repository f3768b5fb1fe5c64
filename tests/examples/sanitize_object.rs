//! Runs the sanitizer Lambda's handler once, in-process, on one S3 object, with the same
//! environment the Lambda reads (the book: docs/src/sanitizer.md, "Configuration"). For measuring it on big
//! objects (`/usr/bin/time -v`) and for trying it against moto without a Lambda emulator.
//!
//! usage: sanitize_object BUCKET KEY

use lambda_runtime::{Context, LambdaEvent};
use sluice_sanitizer::{handle, Deps};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bucket, key] = args.as_slice() else {
        return Err("usage: sanitize_object BUCKET KEY".into());
    };
    let deps = Deps::from_env().await?;
    let event = serde_json::json!({"Records": [{"eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": sluice_e2e::encode_key(key)}}}]});
    let started = std::time::Instant::now();
    let outcomes = handle(LambdaEvent::new(event, Context::default()), &deps).await?;
    println!("{}", serde_json::to_string(&outcomes)?);
    eprintln!("took {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}
