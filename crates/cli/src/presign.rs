//! `sluice presign`: a time-limited URL to download a clean file or a report, or to upload a
//! file into quarantine from a browser (the users' Flask service for presigned URLs, replaced).

use std::time::Duration;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use sluice_aws::{credentials_left, Clients, ObjectStore, Presign};
use sluice_core::drop::quarantine_key;
use sluice_core::PipelineConfig;
use uuid::Uuid;

use crate::exit;

/// S3's limit on a presigned URL's life (SigV4).
const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  sluice presign reports/6f1c2d3e-.../transform.json          # GET from SLUICE_CLEAN_BUCKET
  sluice presign --put \"orders export.csv\" --dataset orders --size 48213 --expires 1h

A PUT URL uploads into the quarantine bucket under the dataset's prefix, at a new key
(incoming/<dataset>/<yyyy>/<mm>/<dd>/<uuid>-<name>), which is printed too. It is signed for
that key, that Content-Type and exactly --size bytes (at most the dataset's
sanitize.limits.max_file_bytes): S3 refuses any other upload with it. Use it with any HTTP
client: curl -X PUT -H 'Content-Type: text/csv' --upload-file FILE 'URL'.
Exit codes: 0 printed; 1 no credentials or bucket, or the dataset is unknown; 2 bad usage.")]
pub struct Args {
    /// The object to download (GET); with --put, the name of the file to upload.
    key: String,
    /// A URL to upload into quarantine instead of one to download.
    #[arg(long)]
    put: bool,
    /// With --put: the dataset whose prefix the upload goes under.
    #[arg(long, required_if_eq("put", "true"))]
    dataset: Option<String>,
    /// With --put: the file's size in bytes; the URL takes exactly this many.
    #[arg(long, required_if_eq("put", "true"))]
    size: Option<u64>,
    /// With --put: the Content-Type the upload must send.
    #[arg(long, default_value = "text/csv")]
    content_type: String,
    /// How long the URL works: 90s, 15m, 12h, 7d (at most 7d).
    #[arg(long, default_value = "15m")]
    expires: String,
    /// Bucket (default: SLUICE_CLEAN_BUCKET to download, SLUICE_QUARANTINE_BUCKET to upload).
    #[arg(long)]
    bucket: Option<String>,
    /// Pipeline config, for the dataset's prefix with --put.
    #[arg(long, env = "SLUICE_CONFIG", default_value = "pipelines.toml")]
    config: std::path::PathBuf,
    /// Print one JSON object: method, url, bucket, key, expires_at (and headers, for a PUT).
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> u8 {
    let expires = match crate::duration::parse(&args.expires) {
        Some(d) if d <= MAX_EXPIRY && !d.is_zero() => d,
        _ => {
            eprintln!(
                "sluice presign: --expires {:?}: give 90s, 15m, 12h or 7d, at most 7d",
                args.expires
            );
            return exit::USAGE;
        }
    };
    let runtime = match crate::runtime::start(crate::runtime::Threads::One) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sluice presign: {}", crate::exit::describe(&e));
            return exit::OPERATIONAL;
        }
    };
    match runtime.block_on(presign(&args, expires)) {
        Ok(lines) => {
            out!("{lines}");
            exit::ACCEPTED
        }
        Err(e) => {
            eprintln!("sluice presign: {}", crate::exit::describe(&e));
            exit::of(&e)
        }
    }
}

async fn presign(args: &Args, expires: Duration) -> Result<String> {
    let env_bucket = |name: &str| std::env::var(name).ok().filter(|b| !b.trim().is_empty());
    let objects = ObjectStore::new(Clients::from_env().await.s3);
    warn_if_credentials_end_sooner(expires).await;
    if args.put {
        let Some(bucket) = args
            .bucket
            .clone()
            .or_else(|| env_bucket("SLUICE_QUARANTINE_BUCKET"))
        else {
            bail!("no quarantine bucket: pass --bucket or set SLUICE_QUARANTINE_BUCKET");
        };
        let config = PipelineConfig::load(&args.config)?;
        let name = args.dataset.as_deref().unwrap_or_default();
        let dataset = config.dataset(name)?;
        let size = args.size.unwrap_or_default();
        let limit = dataset.sanitize.limits.max_file_bytes;
        if size > limit {
            return Err(crate::exit::Usage(format!(
                "--size {size}: dataset `{name}` takes files of at most {limit} bytes \
                 (sanitize.limits.max_file_bytes)"
            ))
            .into());
        }
        let key = quarantine_key(
            &dataset.prefix,
            DateTime::<Utc>::from(std::time::SystemTime::now()),
            Uuid::new_v4(),
            &args.key,
        );
        let bound = Presign::Put {
            content_type: &args.content_type,
            content_length: size,
        };
        let url = objects.presigned(bound, &bucket, &key, expires).await?;
        if args.json {
            let mut out = url_json("PUT", &url, &bucket, &key, expires);
            out["headers"] = serde_json::json!({
                "Content-Type": args.content_type,
                "Content-Length": size.to_string(),
            });
            return Ok(format!("{out}\n"));
        }
        return Ok(format!(
            "{url}\nkey: s3://{bucket}/{key}\nsigned for: Content-Type: {}, Content-Length: \
             {size} (send exactly these; S3 refuses any other upload with this URL)\n",
            args.content_type
        ));
    }
    let Some(bucket) = args
        .bucket
        .clone()
        .or_else(|| env_bucket("SLUICE_CLEAN_BUCKET"))
    else {
        bail!("no clean bucket: pass --bucket or set SLUICE_CLEAN_BUCKET");
    };
    let url = objects
        .presigned(Presign::Get, &bucket, &args.key, expires)
        .await?;
    if args.json {
        let out = url_json("GET", &url, &bucket, &args.key, expires);
        return Ok(format!("{out}\n"));
    }
    Ok(format!("{url}\n"))
}

fn url_json(
    method: &str,
    url: &str,
    bucket: &str,
    key: &str,
    expires: Duration,
) -> serde_json::Value {
    let at = DateTime::<Utc>::from(std::time::SystemTime::now() + expires);
    let out = serde_json::json!({
        "method": method,
        "url": url,
        "bucket": bucket,
        "key": key,
        "expires_at": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    });
    out
}

/// A URL signed with temporary credentials stops working when they expire, whatever its own
/// expiry says.
async fn warn_if_credentials_end_sooner(expires: Duration) {
    if let Some(left) = credentials_left().await.filter(|left| *left < expires) {
        eprintln!(
            "sluice presign: warning: these are temporary credentials that expire in {} min; \
             the URL stops working then, before the {} min asked for",
            left.as_secs() / 60,
            expires.as_secs() / 60
        );
    }
}
