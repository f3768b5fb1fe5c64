//! What the end-to-end tests share: a local AWS (moto server, from `AWS_ENDPOINT_URL`) and
//! PostgreSQL (`DATABASE_URL`), both started by scripts/test.sh, with buckets, queues and a
//! database schema of each test's own, removed when the test ends.

pub mod api;
pub mod chaos;
pub mod fault_proxy;
pub mod lambda_emu;
pub mod lambda_soak;

use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_s3::primitives::ByteStream;
use sluice_aws::Clients;
use sluice_core::{FileStatus, Stage};
use sluice_db::{migrate, Db, DbConfig, NewFile, RowCounts, Store};

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into())
}

pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// One test's world: a quarantine bucket, a clean bucket, a transform queue, a schema.
pub struct World {
    pub clients: Clients,
    pub quarantine: String,
    pub clean: String,
    pub queue_url: String,
    pub schema: String,
}

impl World {
    pub async fn new() -> Self {
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok(),
            "AWS_ENDPOINT_URL must point at moto server: run the tests with scripts/test.sh"
        );
        let clients = Clients::from_env().await;
        let quarantine = unique("sluice-quarantine");
        let clean = unique("sluice-clean");
        for bucket in [&quarantine, &clean] {
            clients
                .s3
                .create_bucket()
                .bucket(bucket)
                .send()
                .await
                .unwrap();
        }
        let queue_url = clients
            .sqs
            .create_queue()
            .queue_name(unique("sluice-transform"))
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_string();
        let schema = unique("sluice_e2e").replace('-', "_");
        let admin = DbConfig::parse(&database_url(), None).unwrap();
        admin
            .connect()
            .await
            .expect("PostgreSQL is reachable")
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
        Self {
            clients,
            quarantine,
            clean,
            queue_url,
            schema,
        }
    }

    pub fn db_config(&self) -> DbConfig {
        DbConfig::parse(&database_url(), None)
            .unwrap()
            .with_schema(&self.schema)
    }

    /// A migrated status store in this world's schema.
    pub async fn store(&self) -> Store {
        let db = Db::new(self.db_config());
        migrate(&db).await.unwrap();
        Store::new(db)
    }

    /// The store of one function: its statements run as its role (`sluice_sanitizer`, ...),
    /// with that role's grants alone (the schema migrated first, as its owner).
    pub async fn store_as(&self, role: &str) -> Store {
        self.store().await;
        Store::new(Db::new(self.db_config().acting_as(role)))
    }

    /// An `orders` file uploaded as `incoming/orders/<name>` that the sanitizer has finished:
    /// its row at `sanitized` with its clean key from the layout (the clean object is the
    /// caller's to write, at `sluice_core::layout::clean_key("orders", id)`).
    pub async fn sanitized_file(&self, store: &Store, name: &str) -> uuid::Uuid {
        let key = format!("incoming/orders/{name}");
        let id = store
            .register(&NewFile {
                dataset: "orders",
                site: None,
                bucket: &self.quarantine,
                key: &key,
                etag: "e",
                size: 1,
                replay_of: None,
                uploaded_by: None,
                uploaded_at: None,
            })
            .await
            .unwrap()
            .id;
        let json = serde_json::json!({});
        let clean_key = sluice_core::layout::clean_key("orders", id);
        store
            .advance(id, Stage::Sanitizer, FileStatus::Sanitizing, json.clone())
            .await
            .unwrap();
        store
            .finish_sanitize(
                id,
                FileStatus::Sanitized,
                Some(&clean_key),
                RowCounts::default(),
                None,
                json,
            )
            .await
            .unwrap();
        id
    }

    /// Puts an object into the quarantine bucket.
    pub async fn put(&self, key: &str, body: Vec<u8>) {
        self.put_into(&self.quarantine, key, body).await;
    }

    /// Puts an object into the clean bucket (a clean file, a claim check).
    pub async fn put_clean(&self, key: &str, body: Vec<u8>) {
        self.put_into(&self.clean, key, body).await;
    }

    async fn put_into(&self, bucket: &str, key: &str, body: Vec<u8>) {
        self.clients
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap();
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let object = self
            .clients
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await;
        match object {
            Ok(o) => Some(o.body.collect().await.unwrap().into_bytes().to_vec()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => None,
            Err(e) => panic!("GetObject {bucket}/{key}: {e:?}"),
        }
    }

    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let listed = self
            .clients
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }

    /// Every message now on the transform queue (received and deleted).
    pub async fn drain_queue(&self) -> Vec<serde_json::Value> {
        self.drain(&self.queue_url).await
    }

    /// A new queue of this world's (removed by `clean_up` only if kept in `queue_url`; the
    /// caller deletes it).
    pub async fn new_queue(&self, name: &str) -> String {
        self.clients
            .sqs
            .create_queue()
            .queue_name(unique(name))
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_string()
    }

    /// Removes a queue a test made.
    pub async fn delete_queue(&self, queue_url: &str) {
        self.clients
            .sqs
            .delete_queue()
            .queue_url(queue_url)
            .send()
            .await
            .unwrap();
    }

    /// Every message now on `queue_url` (received and deleted).
    pub async fn drain(&self, queue_url: &str) -> Vec<serde_json::Value> {
        let mut bodies = Vec::new();
        loop {
            let received = self
                .clients
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .unwrap();
            let messages = received.messages();
            if messages.is_empty() {
                return bodies;
            }
            for m in messages {
                bodies.push(serde_json::from_str(m.body().unwrap()).unwrap());
                self.clients
                    .sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// An S3 ObjectCreated notification as AWS sends it: the key URL-encoded, `+` for space.
    pub fn created_event(&self, key: &str, size: usize) -> serde_json::Value {
        serde_json::json!({
            "Records": [{
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-11-23T08:14:05.123Z",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": { "name": self.quarantine, "arn": format!("arn:aws:s3:::{}", self.quarantine) },
                    "object": { "key": encode_key(key), "size": size, "eTag": "ignored-by-sluice" }
                }
            }]
        })
    }

    /// Removes the buckets and the queue (the schema goes when the world is dropped).
    pub async fn clean_up(self) {
        for bucket in [&self.quarantine, &self.clean] {
            for key in self.keys(bucket).await {
                let _ = self
                    .clients
                    .s3
                    .delete_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await;
            }
            let _ = self.clients.s3.delete_bucket().bucket(bucket).send().await;
        }
        let _ = self
            .clients
            .sqs
            .delete_queue()
            .queue_url(&self.queue_url)
            .send()
            .await;
    }
}

/// The schema goes even when a test panics before `clean_up` (moto's buckets and queues go
/// with the moto server at the end of the run).
impl Drop for World {
    fn drop(&mut self) {
        drop_schema(self.schema.clone());
    }
}

/// S3's event key encoding: like Python's `quote_plus` with `/` kept.
pub fn encode_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A database schema of a test's own with a migrated store in it, for tests that need
/// PostgreSQL and no AWS; dropped with the value.
pub struct Schema {
    pub name: String,
}

impl Schema {
    pub async fn create() -> Self {
        let name = unique("sluice_schema").replace('-', "_");
        DbConfig::parse(&database_url(), None)
            .unwrap()
            .connect()
            .await
            .expect("PostgreSQL is reachable")
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap();
        Self { name }
    }

    /// A migrated status store in this schema (its own connection).
    pub async fn store(&self) -> Store {
        let db = Db::new(
            DbConfig::parse(&database_url(), None)
                .unwrap()
                .with_schema(&self.name),
        );
        migrate(&db).await.unwrap();
        Store::new(db)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        drop_schema(self.name.clone());
    }
}

/// Drops `schema` from a thread of its own (a `Drop` cannot await).
fn drop_schema(schema: String) {
    let _ = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            let Ok(config) = DbConfig::parse(&database_url(), None) else {
                return;
            };
            if let Ok(client) = config.connect().await {
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await;
            }
        });
    })
    .join();
}
