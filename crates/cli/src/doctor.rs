//! `sluice doctor`: is this deployment wired right? One PASS/FAIL line per check with what to
//! do: credentials, buckets, queues and their dead-letter queues, secrets, the database and
//! its migrations. It reads the same settings the Lambdas do.

use std::path::PathBuf;

use serde_json::{json, Value};
use sluice_aws::{probe, Clients};
use sluice_core::delivery::HeaderSource;
use sluice_core::PipelineConfig;
use sluice_db::{pending_migrations, Db, DbConfig};

use crate::exit;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Reads what the Lambdas read: SLUICE_DROP_BUCKET, SLUICE_QUARANTINE_BUCKET,
SLUICE_CLEAN_BUCKET, SLUICE_SANITIZE_QUEUE_URL, SLUICE_TRANSFORM_QUEUE_URL,
SLUICE_FORWARD_QUEUE_URL, DATABASE_URL (with its credentials), SLUICE_DB_CA_FILE,
DATABASE_SECRET_ARN, and the pipeline config (secrets its headers name). A setting that is not
set is skipped, not failed.

Example:
  SLUICE_QUARANTINE_BUCKET=... SLUICE_TRANSFORM_QUEUE_URL=... DATABASE_URL=... sluice doctor

Exit codes: 0 every check passed; 1 a check failed."
)]
pub struct Args {
    /// Pipeline config (its datasets' secrets are checked).
    #[arg(long, env = "SLUICE_CONFIG", default_value = "pipelines.toml")]
    config: PathBuf,
    /// The sanitizer's timeout in seconds (its queue's visibility must be 6x this).
    #[arg(long, default_value_t = 900)]
    sanitizer_timeout: u64,
    /// The transformer's timeout in seconds.
    #[arg(long, default_value_t = 900)]
    transformer_timeout: u64,
    /// The forwarder's timeout in seconds.
    #[arg(long, default_value_t = 120)]
    forwarder_timeout: u64,
    /// Print the checks as JSON.
    #[arg(long)]
    json: bool,
}

/// One check's outcome: passed, failed (with what to do), or skipped (not configured).
struct Check {
    name: String,
    outcome: Outcome,
}

enum Outcome {
    Pass(String),
    Fail { why: String, fix: String },
    Skip(String),
}

impl Check {
    fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            outcome: Outcome::Pass(detail.into()),
        }
    }

    fn fail(name: impl Into<String>, why: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            outcome: Outcome::Fail {
                why: why.into(),
                fix: fix.into(),
            },
        }
    }

    fn skip(name: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            outcome: Outcome::Skip(why.into()),
        }
    }
}

fn setting(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub fn run(args: Args) -> u8 {
    let runtime = match crate::runtime::start(crate::runtime::Threads::One) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sluice doctor: {}", crate::exit::describe(&e));
            return exit::OPERATIONAL;
        }
    };
    if let Some(endpoint) = stand_in() {
        let note = format!(
            "talking to {endpoint} (AWS_ENDPOINT_URL), not AWS: a local stand-in such as moto; \
             the bucket's EventBridge check cannot pass there and is skipped"
        );
        match args.json {
            true => eprintln!("sluice doctor: {note}"),
            false => outln!("NOTE  {note}"),
        }
    }
    let checks = runtime.block_on(checks(&args));
    let failed = checks
        .iter()
        .any(|c| matches!(c.outcome, Outcome::Fail { .. }));
    if args.json {
        let list: Vec<Value> = checks
            .iter()
            .map(|c| match &c.outcome {
                Outcome::Pass(detail) => {
                    json!({"check": c.name, "result": "pass", "detail": detail})
                }
                Outcome::Fail { why, fix } => {
                    json!({"check": c.name, "result": "fail", "detail": why, "fix": fix})
                }
                Outcome::Skip(why) => json!({"check": c.name, "result": "skip", "detail": why}),
            })
            .collect();
        outln!("{:#}", Value::Array(list));
    } else {
        for c in &checks {
            match &c.outcome {
                Outcome::Pass(detail) => outln!("PASS  {}: {detail}", c.name),
                Outcome::Fail { why, fix } => outln!("FAIL  {}: {why}\n      fix: {fix}", c.name),
                Outcome::Skip(why) => outln!("SKIP  {}: {why}", c.name),
            }
        }
    }
    if failed {
        exit::OPERATIONAL
    } else {
        exit::ACCEPTED
    }
}

/// The endpoint every AWS call goes to instead of AWS, if one is set.
fn stand_in() -> Option<String> {
    std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|e| !e.trim().is_empty())
}

async fn checks(args: &Args) -> Vec<Check> {
    let mut out = Vec::new();
    let clients = Clients::from_env().await;
    out.push(credentials().await);
    for (name, var, eventbridge) in [
        ("drop bucket", "SLUICE_DROP_BUCKET", false),
        ("quarantine bucket", "SLUICE_QUARANTINE_BUCKET", true),
        ("clean bucket", "SLUICE_CLEAN_BUCKET", false),
    ] {
        match setting(var) {
            Some(bucket) => out.extend(bucket_checks(&clients, name, &bucket, eventbridge).await),
            None => out.push(Check::skip(name, format!("{var} is not set"))),
        }
    }
    for (name, var, timeout) in [
        (
            "sanitize queue",
            "SLUICE_SANITIZE_QUEUE_URL",
            args.sanitizer_timeout,
        ),
        (
            "transform queue",
            "SLUICE_TRANSFORM_QUEUE_URL",
            args.transformer_timeout,
        ),
        (
            "forward queue",
            "SLUICE_FORWARD_QUEUE_URL",
            args.forwarder_timeout,
        ),
    ] {
        match setting(var) {
            Some(url) => out.extend(queue_checks(&clients, name, &url, timeout).await),
            None => out.push(Check::skip(name, format!("{var} is not set"))),
        }
    }
    out.extend(secret_checks(&clients, args).await);
    out.extend(database_checks().await);
    out
}

async fn credentials() -> Check {
    let fix = "configure AWS credentials (aws configure, AWS_PROFILE, SSO)";
    match probe::credentials().await {
        Ok(true) => Check::pass("credentials", "temporary credentials found"),
        Ok(false) => Check::pass("credentials", "credentials found"),
        Err(why) => Check::fail("credentials", why, fix),
    }
}

async fn bucket_checks(
    clients: &Clients,
    name: &str,
    bucket: &str,
    eventbridge: bool,
) -> Vec<Check> {
    let label = format!("{name} {bucket}");
    let facts = match probe::bucket(clients, bucket).await {
        Ok(facts) => facts,
        Err(why) => {
            return vec![Check::fail(
                &label,
                format!("not reachable: {why}"),
                "create it (template.yaml does) or fix the name in the setting",
            )]
        }
    };
    let mut out = vec![Check::pass(&label, "exists")];
    out.push(match facts.aborts_incomplete_uploads {
        true => Check::pass(
            format!("{label} lifecycle"),
            "incomplete multipart uploads are aborted",
        ),
        false => Check::fail(
            format!("{label} lifecycle"),
            "no rule aborts incomplete multipart uploads",
            "add an AbortIncompleteMultipartUpload rule (template.yaml has one: 1 day)",
        ),
    });
    if eventbridge {
        out.push(match facts.eventbridge {
            true => Check::pass(format!("{label} events"), "EventBridge notifications are on"),
            // moto takes the setting and does not keep it: no fix would make this pass there.
            false if stand_in().is_some() => Check::skip(
                format!("{label} events"),
                "cannot pass on a local stand-in (moto does not keep a bucket's EventBridge \
                 setting); on the local stack the listener's reconciliation takes uploads to \
                 the sanitizer instead",
            ),
            false => Check::fail(format!("{label} events"), "EventBridge notifications are off: uploads would never reach the sanitizer", "turn on EventBridge notifications for the bucket (template.yaml: EventBridgeConfiguration)"),
        });
    }
    out
}

async fn queue_checks(clients: &Clients, name: &str, url: &str, timeout: u64) -> Vec<Check> {
    let label = format!("{name} {}", url.rsplit('/').next().unwrap_or(url));
    let facts = match probe::queue(clients, url).await {
        Ok(facts) => facts,
        Err(why) => {
            return vec![Check::fail(
                &label,
                format!("not reachable: {why}"),
                "create it (template.yaml does) or fix the URL in the setting",
            )]
        }
    };
    let mut out = vec![Check::pass(&label, "exists")];
    let visibility = facts.visibility_seconds;
    out.push(match visibility >= 6 * timeout {
        true => Check::pass(format!("{label} visibility"), format!("{visibility} s, at least 6x the consumer's {timeout} s")),
        false => Check::fail(format!("{label} visibility"), format!("{visibility} s is under 6x the consumer's {timeout} s: a message could come back while it is still being worked on"), format!("set VisibilityTimeout to at least {}", 6 * timeout)),
    });
    let Some(dead) = facts.dead_letters else {
        out.push(Check::fail(format!("{label} dead-letter queue"), "no redrive policy: a message that keeps failing is retried forever", "set a RedrivePolicy with a dead-letter queue and maxReceiveCount (= SLUICE_MAX_RECEIVE_COUNT)"));
        return out;
    };
    let dlq_name = dead.queue;
    out.push(match dead.exists {
        Ok(()) => Check::pass(
            format!("{label} dead-letter queue"),
            format!(
                "{dlq_name}, after {} deliveries",
                dead.max_receive_count.unwrap_or_default()
            ),
        ),
        Err(why) => Check::fail(
            format!("{label} dead-letter queue"),
            format!("the redrive policy names {dlq_name}, which is not there: {why}"),
            "create the dead-letter queue or fix the redrive policy",
        ),
    });
    out
}

async fn secret_checks(clients: &Clients, args: &Args) -> Vec<Check> {
    let mut names: Vec<(String, String)> = Vec::new();
    if let Some(arn) = setting("DATABASE_SECRET_ARN") {
        names.push(("database secret".into(), arn));
    }
    match PipelineConfig::load(&args.config) {
        Ok(config) => {
            for dataset in config.datasets() {
                for (header, value) in &dataset.delivery.headers {
                    if let HeaderSource::Secret { id, .. } = value {
                        names.push((format!("{} header {header}", dataset.name), id.clone()));
                    }
                }
            }
        }
        Err(e) => {
            return vec![Check::fail(
                "pipeline config",
                e.to_string(),
                "fix the config (the error names the dataset and field)",
            )]
        }
    }
    if names.is_empty() {
        return vec![Check::skip("secrets", "none configured")];
    }
    let mut out = Vec::new();
    for (what, secret) in names {
        let label = format!("secret for {what}");
        out.push(match probe::secret_readable(clients, &secret).await {
            Ok(()) => Check::pass(&label, format!("{secret} is readable")),
            Err(why) => Check::fail(
                &label,
                format!("{secret}: {why}"),
                "create the secret or allow secretsmanager:GetSecretValue on it",
            ),
        });
    }
    out
}

async fn database_checks() -> Vec<Check> {
    let Some(url) = setting("DATABASE_URL") else {
        return vec![Check::skip("database", "DATABASE_URL is not set")];
    };
    let ca = setting("SLUICE_DB_CA_FILE").map(PathBuf::from);
    let config = match DbConfig::parse(&url, ca.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::fail(
                "database",
                e.to_string(),
                "fix DATABASE_URL / SLUICE_DB_CA_FILE",
            )]
        }
    };
    let tls = match config.uses_tls() {
        true => "verified TLS",
        false => "plaintext (loopback)",
    };
    let db = Db::new(config);
    match pending_migrations(&db).await {
        Ok(pending) if pending.is_empty() => vec![
            Check::pass("database", format!("reachable, {tls}")),
            Check::pass("migrations", "current"),
        ],
        Ok(pending) => vec![
            Check::pass("database", format!("reachable, {tls}")),
            Check::fail(
                "migrations",
                format!("behind: {pending:?} not applied"),
                "run `sluice migrate` (or invoke the listener, which migrates at cold start)",
            ),
        ],
        Err(e) => vec![Check::fail(
            "database",
            e.to_string(),
            "check the host, credentials, security group and CA bundle",
        )],
    }
}
