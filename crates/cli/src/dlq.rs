//! `sluice dlq`: what is in a dead-letter queue (never taking it out), one message in full,
//! and moving them back to the queue they failed on.

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sluice_aws::dlq::{self, Decision, Peeked, Redriven};
use sluice_aws::{Clients, ObjectStore};
use sluice_core::message::{about, FileSanitized, MessageKind, RecordBatchRef, RecordsAt};
use sluice_db::{Db, DbConfig, Store};
use uuid::Uuid;

use crate::exit::{self, Usage};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  sluice dlq list sluice-ForwardDeadLetterQueue-1A2B3C
  sluice dlq show https://sqs.eu-west-1.amazonaws.com/123456789012/sluice-forward-dlq 5fea7756-...
  sluice dlq redrive sluice-ForwardDeadLetterQueue-1A2B3C --rate 5

QUEUE is a queue name or URL (the stack's outputs name them). Credentials, region and
AWS_ENDPOINT_URL come from the usual AWS environment.
A redrive looks at each message first and leaves in the queue, with the reason and the replay
to run, any that would do no good back on its queue.
Exit codes: 0 done; 1 the queue or the message could not be found or read, or a redrive left
messages in the queue; 2 bad usage.")]
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
        /// Look at a queue that is not a dead-letter queue (each look counts as a receive
        /// there, and receives decide when a message is dead-lettered).
        #[arg(long)]
        force: bool,
    },
    /// One message in full: its envelope and its body.
    Show {
        queue: String,
        message_id: String,
        #[arg(long)]
        json: bool,
        /// Look at a queue that is not a dead-letter queue (see `list --force`).
        #[arg(long)]
        force: bool,
    },
    /// Moves the messages back to the queue they failed on (or to --to), at most --rate a
    /// second, each after a look: a message that cannot do any good there (not one Sluice
    /// reads, of a file that is final or unknown, a batch whose claim check is gone) is left
    /// in the queue with the reason and the replay to run instead.
    Redrive {
        queue: String,
        /// Destination queue (default: the queue whose redrive policy names this one).
        #[arg(long)]
        to: Option<String>,
        /// Messages a second.
        #[arg(long, default_value_t = 10)]
        rate: u32,
        /// The status database, to leave a final file's messages where they are (without it
        /// file statuses are not looked at).
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// CA bundle for the database's TLS certificate.
        #[arg(long, env = "SLUICE_DB_CA_FILE")]
        ca_file: Option<std::path::PathBuf>,
    },
}

pub fn run(args: Args) -> u8 {
    let runtime = match crate::runtime::start(crate::runtime::Threads::One) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sluice dlq: {}", crate::exit::describe(&e));
            return exit::OPERATIONAL;
        }
    };
    match runtime.block_on(dispatch(args.command)) {
        Ok((text, code)) => {
            out!("{text}");
            code
        }
        Err(e) => {
            eprintln!("sluice dlq: {}", crate::exit::describe(&e));
            exit::of(&e)
        }
    }
}

/// Looking receives each message once: harmless in a dead-letter queue, a step toward the
/// dead-letter queue anywhere else. Refuses any other queue unless `force`.
async fn only_dead_letters(queues: &dlq::Queues, url: &str, force: bool) -> Result<()> {
    let why = match queues.queue_role(url).await? {
        dlq::QueueRole::DeadLetter { .. } => return Ok(()),
        _ if force => return Ok(()),
        dlq::QueueRole::Source { max_receives } => format!(
            "{url} is not a dead-letter queue: it moves a message to its own dead-letter queue \
             after {} receives, and SQS counts every look as a receive, so looking could send \
             live messages there",
            max_receives.map_or("some".to_string(), |n| n.to_string())
        ),
        dlq::QueueRole::Plain => {
            format!("{url} is not a dead-letter queue: no queue's redrive policy names it")
        }
    };
    Err(Usage(format!(
        "{why}\nfix: name a dead-letter queue (the stack's outputs list them), or add --force \
         to look anyway"
    ))
    .into())
}

/// What to print, and the exit code.
async fn dispatch(command: Sub) -> Result<(String, u8)> {
    let clients = Clients::from_env().await;
    let queues = clients.queues();
    match command {
        Sub::List {
            queue,
            max,
            json,
            force,
        } => {
            let url = queues.queue_url(&queue).await?;
            only_dead_letters(&queues, &url, force).await?;
            let messages = queues.peek(&url, max).await?;
            let text = match json {
                true => format!(
                    "{:#}\n",
                    Value::Array(messages.iter().map(message_json).collect())
                ),
                false => table(&messages),
            };
            Ok((text, exit::ACCEPTED))
        }
        Sub::Show {
            queue,
            message_id,
            json,
            force,
        } => {
            let url = queues.queue_url(&queue).await?;
            only_dead_letters(&queues, &url, force).await?;
            let messages = queues.peek(&url, usize::MAX).await?;
            let Some(message) = messages.iter().find(|m| m.message_id == message_id) else {
                bail!("no message {message_id} in {url} (it may have been moved or expired)");
            };
            let mut shown = message_json(message);
            shown["body"] = serde_json::from_str(&message.body)
                .unwrap_or_else(|_| Value::String(message.body.clone()));
            let text = match json {
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
            };
            Ok((text, exit::ACCEPTED))
        }
        Sub::Redrive {
            queue,
            to,
            rate,
            database_url,
            ca_file,
        } => {
            let url = queues.queue_url(&queue).await?;
            let to = match to {
                Some(to) => queues.queue_url(&to).await?,
                None => {
                    let sources = queues.source_queues(&url).await?;
                    match sources.as_slice() {
                        [one] => one.clone(),
                        [] => bail!("no queue names {url} as its dead-letter queue: say where with --to"),
                        _ => bail!("several queues use {url} as their dead-letter queue: say which with --to"),
                    }
                }
            };
            let store = match database_url {
                Some(database_url) => {
                    let config = DbConfig::parse(&database_url, ca_file.as_deref())
                        .context("DATABASE_URL")?;
                    Some(Store::new(Db::new(config)))
                }
                None => None,
            };
            let look = Look {
                store: store.as_ref(),
                objects: ObjectStore::new(clients.s3.clone()),
            };
            let look = &look;
            let decide = move |body: String| async move { look.decide(&body).await };
            let done = queues
                .redrive(&url, &to, rate, decide)
                .await
                .context("redriving")?;
            Ok(redriven(&done, &to, store.is_some()))
        }
    }
}

/// What `sluice dlq redrive` says: the messages kept and why, then the counts.
fn redriven(done: &Redriven, to: &str, statuses_checked: bool) -> (String, u8) {
    let mut out = String::new();
    for kept in &done.kept {
        out.push_str(&format!("kept {}: {}\n", kept.message_id, kept.reason));
    }
    out.push_str(&format!(
        "moved {} message(s) to {to}; {} left in the dead-letter queue\n",
        done.moved,
        done.kept.len()
    ));
    if !statuses_checked {
        out.push_str("(no DATABASE_URL: file statuses were not looked at)\n");
    }
    // A redrive that left messages behind is not done: exit 1, as for a queue not found.
    let code = match done.kept.is_empty() {
        true => exit::ACCEPTED,
        false => exit::OPERATIONAL,
    };
    (out, code)
}

/// Looks at a dead letter before it is moved back.
struct Look<'a> {
    store: Option<&'a Store>,
    objects: ObjectStore,
}

impl Look<'_> {
    async fn decide(&self, body: &str) -> Decision {
        match self.why_not(body).await {
            Ok(()) => Decision::Move,
            Err(reason) => Decision::Keep(reason),
        }
    }

    /// Why the message would do no good back on its queue, if it would not.
    async fn why_not(&self, body: &str) -> Result<(), String> {
        match about(body).kind {
            MessageKind::RecordBatch => {
                let batch = RecordBatchRef::parse(body)?;
                let id = batch.file_id;
                let replay =
                    format!("`sluice replay {id} --from forward` sends what it did not deliver");
                self.live(id, "its batches are not posted", &replay).await?;
                if let RecordsAt::S3(pointer) = &batch.records {
                    let head = self
                        .objects
                        .head(&pointer.bucket, &pointer.key)
                        .await
                        .map_err(|e| format!("its claim check could not be looked at: {e}"))?;
                    if head.is_none() {
                        return Err(format!(
                            "record batch {} of file {id}: its claim check s3://{}/{} is gone \
                             (claim checks expire after ClaimCheckRetentionDays): {replay}",
                            batch.batch_id, pointer.bucket, pointer.key
                        ));
                    }
                }
                Ok(())
            }
            MessageKind::FileSanitized => {
                let message: FileSanitized = serde_json::from_str(body)
                    .map_err(|e| format!("not a \"file sanitized\" message: {e}"))?;
                let id = message.file_id;
                let replay = format!("`sluice replay {id} --from transform` runs it again");
                self.live(id, "it is not transformed again", &replay).await
            }
            // The sanitizer registers an object once, whatever the copies.
            MessageKind::ObjectCreated | MessageKind::S3Event => Ok(()),
            other => Err(format!(
                "{}: not a message Sluice reads (see it with `sluice dlq show`)",
                other.as_str()
            )),
        }
    }

    /// That file `id` is known and not final, when the statuses can be looked at.
    async fn live(&self, id: Uuid, not_done: &str, replay: &str) -> Result<(), String> {
        let Some(store) = self.store else {
            return Ok(());
        };
        match store.file(id).await {
            Ok(Some(row)) if row.status.is_final() => {
                Err(format!("file {id} is {}: {not_done}; {replay}", row.status))
            }
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(format!("file {id} is not in the status store")),
            Err(e) => Err(format!("the status of file {id} could not be read: {e}")),
        }
    }
}

fn message_json(m: &Peeked) -> Value {
    let about = about(&m.body);
    json!({
        "message_id": m.message_id,
        "sent_at": m.sent_at.map(|t| DateTime::<Utc>::from(t).format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        "receive_count": m.receive_count,
        "kind": about.kind.as_str(),
        "file_id": about.file_id,
        "dataset": about.dataset,
        "what": about.what,
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
