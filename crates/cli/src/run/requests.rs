//! Delivery for a local run: POST to `--api`, or, by default, one JSON line per request in
//! `<out>/requests/<dataset>.jsonl` (what would have been sent, without its headers).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_core::delivery::{AttemptClass, BatchHeader};
use sluice_stages::delivery::Attempt;
use sluice_stages::delivery::Target;
use sluice_stages::ports::Poster;

pub enum LocalPoster {
    Http(sluice_http::HttpPoster),
    Files(RequestFiles),
}

impl Poster for LocalPoster {
    async fn post(
        &self,
        target: &Target,
        batch: &BatchHeader<'_>,
        body: Bytes,
        timeout: Duration,
    ) -> Attempt {
        match self {
            LocalPoster::Http(client) => Poster::post(client, target, batch, body, timeout).await,
            LocalPoster::Files(files) => files.write(target, batch, &body),
        }
    }
}

/// The requests files, one per dataset, opened on first use and appended to.
pub struct RequestFiles {
    dir: PathBuf,
    open: Mutex<HashMap<String, BufWriter<File>>>,
}

impl RequestFiles {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            open: Mutex::default(),
        }
    }

    pub fn path(&self, dataset: &str) -> PathBuf {
        self.dir.join(format!("{dataset}.jsonl"))
    }

    fn write(&self, target: &Target, batch: &BatchHeader<'_>, body: &[u8]) -> Attempt {
        let started = Instant::now();
        let written = self.append(target, batch, body);
        let (class, status, error) = match written {
            Ok(()) => (AttemptClass::Delivered, Some(200), None),
            Err(e) => (
                AttemptClass::Transient,
                None,
                Some(format!(
                    "writing {}: {e}",
                    self.path(batch.dataset).display()
                )),
            ),
        };
        Attempt {
            class,
            status,
            latency: started.elapsed(),
            excerpt: None,
            error,
            retry_after: None,
        }
    }

    fn append(&self, target: &Target, batch: &BatchHeader<'_>, body: &[u8]) -> std::io::Result<()> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if !open.contains_key(batch.dataset) {
            fs::create_dir_all(&self.dir)?;
            // Appended: with the record state kept under the same `--out`, the file is what
            // the API would have received over every run, as the state assumes.
            let file = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(batch.dataset))?;
            open.insert(batch.dataset.to_string(), BufWriter::new(file));
        }
        let out = open
            .get_mut(batch.dataset)
            .expect("the requests file was just opened");
        let quote = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        write!(
            out,
            "{{\"idempotency_key\":{},\"endpoint\":{},\"batch\":\"{}/{}\",\"body\":",
            quote(batch.batch_id),
            quote(target.endpoint.as_str()),
            batch.seq,
            batch.total
        )?;
        out.write_all(body)?;
        out.write_all(b"}\n")?;
        out.flush()
    }
}
