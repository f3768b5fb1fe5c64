//! Notifications on an EventBridge bus: one "Sluice File Status Changed" event per file that
//! reaches a final status.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use sluice_stages::ports::{FileNotice, Notifier, DETAIL_TYPE, EVENT_SOURCE};

/// PutEvents takes at most ten entries.
const PER_CALL: usize = 10;

/// Publishes to one bus (`SLUICE_EVENT_BUS`: its name or ARN).
#[derive(Clone, Debug)]
pub struct EventBus {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBus {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }

    /// From `SLUICE_EVENT_BUS`; `None` when it is not set (notifications then wait in the
    /// status store).
    pub fn from_env(client: aws_sdk_eventbridge::Client) -> Option<Self> {
        let bus = std::env::var("SLUICE_EVENT_BUS").ok()?;
        let bus = bus.trim();
        (!bus.is_empty()).then(|| Self::new(client, bus))
    }

    pub fn bus(&self) -> &str {
        &self.bus
    }

    async fn put(&self, notices: &[FileNotice]) -> Vec<(String, String)> {
        let mut entries = Vec::with_capacity(notices.len());
        for n in notices {
            let detail = serde_json::to_string(n).unwrap_or_default();
            entries.push(
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(EVENT_SOURCE)
                    .detail_type(DETAIL_TYPE)
                    .detail(detail)
                    .resources(format!("sluice:file/{}", n.file_id))
                    .build(),
            );
        }
        let out = match self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let why = format!(
                    "EventBridge PutEvents on {}: {}",
                    self.bus,
                    sluice_core::errors::chain(&e)
                );
                return notices
                    .iter()
                    .map(|n| (n.event_id.clone(), why.clone()))
                    .collect();
            }
        };
        // Entries answer in order; one with an error code was not put.
        out.entries()
            .iter()
            .zip(notices)
            .filter_map(|(entry, n)| {
                let code = entry.error_code()?;
                let why = format!(
                    "EventBridge refused the event: {code} {}",
                    entry.error_message().unwrap_or_default()
                );
                Some((n.event_id.clone(), why))
            })
            .collect()
    }
}

impl Notifier for EventBus {
    async fn publish(&self, notices: &[FileNotice]) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        for chunk in notices.chunks(PER_CALL) {
            failed.extend(self.put(chunk).await);
        }
        failed
    }
}
