//! Sluice's dashboard: what operators open instead of psql. One axum router, server-rendered
//! pages (askama) that work with JavaScript off, and the same data as JSON under `/api/`.
//! `sluice dashboard` serves it on a port behind a [`Guard`] (a token and a Host check); the
//! `sluice-dashboard` Lambda (crate `sluice-dashboard-lambda`) serves it behind a Function URL
//! with AWS_IAM. It reads the dashboard views
//! through a read-only role, and reaches AWS only through `sluice-aws` (dead-letter queues,
//! presigned links); it links no Lambda crate, as the `sluice` binary links it.
//!
//! | page | JSON |
//! |---|---|
//! | `/` overview of a window | `/api/overview` |
//! | `/files` filterable list | `/api/files` |
//! | `/files/{id}` one file | `/api/files/{id}` |
//! | `/health` API health per dataset and endpoint, with a trend | `/api/health` |
//! | `/dlq` the messages in the dead-letter queues, each with its file | `/api/dlq` |

mod dlq;
mod guard;
mod links;
mod pages;
pub mod queries;
mod window;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use sluice_db::{Db, DbConfig};

pub use dlq::{DeadLetter, DlqDepth, DlqMessages, Dlqs};
pub use guard::Guard;
pub use links::{Link, Links, LINK_LIFE};
pub use window::Window;

/// The role the dashboard reads as: it may read the dashboard views and nothing else.
pub const ROLE: &str = "sluice_dashboard";

/// What the handlers share.
pub struct State {
    pub db: Db,
    /// Dead-letter queues whose depth the overview shows (none configured: not shown).
    pub dlqs: Option<Dlqs>,
    /// What a file's page signs links to its objects with (none: no links).
    pub links: Option<Links>,
    /// No move for this long makes an unfinished file with no lease stuck (the listener's
    /// `SLUICE_STALE_AFTER_SECONDS`).
    pub stale_after: Duration,
}

impl State {
    /// The dashboard's database settings: `config`, acting as [`ROLE`] in read-only
    /// transactions.
    pub fn new(config: DbConfig, dlqs: Option<Dlqs>, stale_after: Duration) -> Self {
        Self::over(Db::new(config.read_only_as(ROLE)), dlqs, stale_after)
    }

    /// Over a connection made elsewhere (the Lambda's, which logs in as [`ROLE`] with IAM
    /// tokens); it must read as [`ROLE`] in read-only transactions
    /// ([`DbConfig::read_only_as`]).
    pub fn over(db: Db, dlqs: Option<Dlqs>, stale_after: Duration) -> Self {
        State {
            db,
            dlqs,
            links: None,
            stale_after,
        }
    }

    /// Links to each file's objects on its page, signed with `links`.
    pub fn with_links(mut self, links: Option<Links>) -> Self {
        self.links = links;
        self
    }
}

/// Every page and JSON endpoint.
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/files", get(pages::files))
        .route("/files/{id}", get(pages::file))
        .route("/health", get(pages::health))
        .route("/dlq", get(pages::dead_letters))
        .route("/api/overview", get(pages::overview_json))
        .route("/api/files", get(pages::files_json))
        .route("/api/files/{id}", get(pages::file_json))
        .route("/api/health", get(pages::health_json))
        .route("/api/dlq", get(pages::dead_letters_json))
        .route("/style.css", get(pages::style))
        .fallback(pages::not_found)
        .with_state(state)
}
