//! `sluice dlq`: what is in a dead-letter queue (never taking it out), one message in full,
//! and moving them back to the queue they failed on.

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sluice_aws::dlq::{self, Moved, Peeked};
use sluice_aws::Clients;

use crate::exit;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  sluice dlq list sluice-ForwardDeadLetterQueue-1A2B3C
  sluice dlq show https://sqs.eu-west-1.amazonaws.com/123456789012/sluice-forward-dlq 5fea7756-...
  sluice dlq redrive sluice-ForwardDeadLetterQueue-1A2B3C --rate 5

QUEUE is a queue name or URL (the stack's outputs name them). Credentials, region and
AWS_ENDPOINT_URL come from the usual AWS environment.
Exit codes: 0 done; 1 the queue or the message could not be found or read; 2 bad usage.")]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// The messages in the queue (left there), with the file each belongs to.
    List {
        queue: String,
        /// Messages shown at most.
        #[arg(long, default_value_t = 100)]
        max: usize,
        #[arg(long)]
        json: bool,
    },
    /// One message in full: its envelope and its body.
    Show {
        queue: String,
        message_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Moves every message back to the queue it failed on (or to --to), at most --rate a
    /// second: by SQS's message-move task where the service has it, else one by one.
    Redrive {
        queue: String,
        /// Destination queue (default: the queue whose redrive policy names this one).
        #[arg(long)]
        to: Option<String>,
        /// Messages a second.
        #[arg(long, default_value_t = 10)]
        rate: u32,
    },
}

pub fn run(args: Args) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sluice dlq: starting the async runtime: {e}");
            return exit::OPERATIONAL;
        }
    };
    match runtime.block_on(dispatch(args.command)) {
        Ok(text) => {
            print!("{text}");
            exit::ACCEPTED
        }
        Err(e) => {
            eprintln!("sluice dlq: {e:#}");
            exit::OPERATIONAL
        }
    }
}

async fn dispatch(command: Sub) -> Result<String> {
    let sqs = Clients::from_env().await.sqs;
    match command {
        Sub::List { queue, max, json } => {
            let url = dlq::queue_url(&sqs, &queue).await?;
            let messages = dlq::peek(&sqs, &url, max).await?;
            Ok(match json {
                true => format!(
                    "{:#}\n",
                    Value::Array(messages.iter().map(message_json).collect())
                ),
                false => table(&messages),
            })
        }
        Sub::Show {
            queue,
            message_id,
            json,
        } => {
            let url = dlq::queue_url(&sqs, &queue).await?;
            let messages = dlq::peek(&sqs, &url, usize::MAX).await?;
            let Some(message) = messages.iter().find(|m| m.message_id == message_id) else {
                bail!("no message {message_id} in {url} (it may have been moved or expired)");
            };
            let mut shown = message_json(message);
            shown["body"] = serde_json::from_str(&message.body)
                .unwrap_or_else(|_| Value::String(message.body.clone()));
            Ok(match json {
                true => format!("{shown:#}\n"),
                false => format!(
                    "message   {}\nsent      {}\nreceives  {}\nkind      {}\nfile      {}\n\n{:#}\n",
                    message.message_id,
                    shown["sent_at"].as_str().unwrap_or("-"),
                    message.receive_count,
                    shown["kind"].as_str().unwrap_or("-"),
                    shown["file_id"].as_str().unwrap_or("-"),
                    shown["body"],
                ),
            })
        }
        Sub::Redrive { queue, to, rate } => {
            let url = dlq::queue_url(&sqs, &queue).await?;
            let to = match to {
                Some(to) => dlq::queue_url(&sqs, &to).await?,
                None => {
                    let sources = dlq::source_queues(&sqs, &url).await?;
                    match sources.as_slice() {
                        [one] => one.clone(),
                        [] => bail!("no queue names {url} as its dead-letter queue: say where with --to"),
                        _ => bail!("several queues use {url} as their dead-letter queue: say which with --to"),
                    }
                }
            };
            Ok(
                match dlq::redrive(&sqs, &url, &to, rate)
                    .await
                    .context("redriving")?
                {
                    Moved::Task(handle) => {
                        format!("SQS is moving the messages to {to} (task {handle})\n")
                    }
                    Moved::Count(n) => format!("moved {n} message(s) to {to}\n"),
                },
            )
        }
    }
}

/// What a message is and which file it belongs to, from its body: a record batch, a "file
/// sanitized" message, an EventBridge "Object Created" event or an S3 event.
fn describe(body: &str) -> (&'static str, Option<String>, Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return ("not JSON", None, None, None);
    };
    let text = |v: &Value| v.as_str().map(str::to_string);
    if v.get("batch_id").is_some() {
        return (
            "record batch",
            text(&v["file_id"]),
            text(&v["dataset"]),
            text(&v["batch_id"]),
        );
    }
    if v.get("clean_key").is_some() {
        return (
            "file sanitized",
            text(&v["file_id"]),
            text(&v["dataset"]),
            text(&v["clean_key"]),
        );
    }
    if v["detail-type"] == "Object Created" {
        let key = text(&v["detail"]["object"]["key"]);
        return ("object created", None, None, key);
    }
    if let Some(record) = v["Records"].get(0) {
        return ("s3 event", None, None, text(&record["s3"]["object"]["key"]));
    }
    ("unknown", None, None, None)
}

fn message_json(m: &Peeked) -> Value {
    let (kind, file_id, dataset, what) = describe(&m.body);
    json!({
        "message_id": m.message_id,
        "sent_at": m.sent_at.map(|t| DateTime::<Utc>::from(t).format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        "receive_count": m.receive_count,
        "kind": kind,
        "file_id": file_id,
        "dataset": dataset,
        "what": what,
        "bytes": m.body.len(),
    })
}

fn table(messages: &[Peeked]) -> String {
    let mut out = format!(
        "{:<36}  {:<20} {:>8}  {:<14} {:<36}  {}\n",
        "message", "sent", "receives", "kind", "file", "batch / key"
    );
    for m in messages {
        let v = message_json(m);
        out.push_str(&format!(
            "{:<36}  {:<20} {:>8}  {:<14} {:<36}  {}\n",
            m.message_id,
            v["sent_at"].as_str().unwrap_or("-"),
            m.receive_count,
            v["kind"].as_str().unwrap_or("-"),
            v["file_id"].as_str().unwrap_or("-"),
            v["what"].as_str().unwrap_or("-"),
        ));
    }
    out.push_str(&format!(
        "{} message(s), left in the queue\n",
        messages.len()
    ));
    out
}
