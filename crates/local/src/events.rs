//! Notifications on a machine without AWS: each event, as EventBridge would deliver it to a
//! rule's target, one JSON object per line appended to a file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::json;
use sluice_stages::ports::{FileNotice, Notifier, DETAIL_TYPE, EVENT_SOURCE};

/// Appends events to `path` (`sluice run` writes `<out>/events.jsonl`).
pub struct EventsFile {
    path: PathBuf,
    lock: Mutex<()>,
}

impl EventsFile {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&self, notices: &[FileNotice]) -> std::io::Result<()> {
        let _one_writer = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut lines = Vec::new();
        for n in notices {
            let event = json!({
                "version": "0",
                "id": n.event_id,
                "source": EVENT_SOURCE,
                "detail-type": DETAIL_TYPE,
                "time": n.at,
                "resources": [format!("sluice:file/{}", n.file_id)],
                "detail": n,
            });
            serde_json::to_writer(&mut lines, &event)?;
            lines.push(b'\n');
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(&lines)?;
        file.flush()
    }
}

impl Notifier for EventsFile {
    async fn publish(&self, notices: &[FileNotice]) -> Vec<(String, String)> {
        match self.append(notices) {
            Ok(()) => Vec::new(),
            Err(e) => {
                let why = format!("writing {}: {e}", self.path.display());
                notices
                    .iter()
                    .map(|n| (n.event_id.clone(), why.clone()))
                    .collect()
            }
        }
    }
}
