//! Publishing what finished: after each invocation a stage sends the notifications waiting in
//! the status store (its own files' and any another worker left), so a file's final status is
//! announced seconds after it is recorded; the listener's scheduled run sends what is left.

use sluice_aws::{Clients, EventBus};
use sluice_db::Store;
use sluice_stages::ports::flush;

/// Notifications sent per PutEvents and per invocation (the listener sends more).
const BATCH: usize = 10;
pub const AFTER_INVOCATION: usize = 50;
pub const AFTER_LISTENER_RUN: usize = 1000;

/// The bus from `SLUICE_EVENT_BUS`; `None` (and a log line saying so) when it is not set.
pub async fn event_bus() -> Option<EventBus> {
    let bus = EventBus::from_env(Clients::from_env().await.events);
    match &bus {
        Some(bus) => tracing::info!(bus = %bus.bus(), "final statuses are published on the bus"),
        None => tracing::info!(
            "SLUICE_EVENT_BUS is not set: final-status notifications wait in the status store"
        ),
    }
    bus
}

/// Sends up to `max` waiting notifications; never fails the invocation.
pub async fn publish(store: &Store, bus: Option<&EventBus>, max: usize) {
    if let Some(bus) = bus {
        let done = flush(store, bus, BATCH, max).await;
        if done.published + done.failed > 0 {
            tracing::debug!(
                published = done.published,
                failed = done.failed,
                "notifications"
            );
        }
    }
}
