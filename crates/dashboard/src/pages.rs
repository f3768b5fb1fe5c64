//! The handlers: each page reads through [`Queries`] and renders a template, or the same data
//! as JSON.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State as Shared};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_core::sanitize::SanitizeSummary;
use uuid::Uuid;

use crate::dlq::{DeadLetter, DlqDepth, DlqMessages};
use crate::links::Link;
use crate::queries::{
    parse_cursor, FileDetail, FileFilter, FileItem, FilePage, Health, Overview, Queries, Time,
    TrendSlot,
};
use crate::window::{Window, WINDOWS};
use crate::State;

type Shared_ = Shared<Arc<State>>;

/// Why a page could not be shown.
pub enum PageError {
    NotFound(String),
    BadRequest(String),
    Database(String),
}

impl From<sluice_db::DbError> for PageError {
    fn from(e: sluice_db::DbError) -> Self {
        tracing::error!(error = %e, "dashboard query failed");
        PageError::Database(e.to_string())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            PageError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            PageError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            PageError::Database(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the status store could not be read: {m}"),
            ),
        };
        let page = ErrorPage {
            title: status.canonical_reason().unwrap_or("error").to_string(),
            message,
        };
        (status, render(&page)).into_response()
    }
}

fn render<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    title: String,
    message: String,
}

pub async fn not_found() -> PageError {
    PageError::NotFound("no such page".into())
}

pub async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../templates/style.css"),
    )
}

#[derive(Debug, Deserialize)]
pub struct WindowQuery {
    window: Option<String>,
}

/// The overview and the queues' depths.
#[derive(Serialize)]
pub struct OverviewData {
    window: &'static str,
    #[serde(flatten)]
    overview: Overview,
    /// `null` when no dead-letter queue is configured (`SLUICE_DLQ_URLS`).
    dlq: Option<Vec<DlqDepth>>,
}

async fn overview_data(state: &State, window: Window) -> Result<OverviewData, PageError> {
    let queries = Queries { db: &state.db };
    let overview = queries.overview(window.since(), state.stale_after).await?;
    let dlq = match &state.dlqs {
        Some(dlqs) => Some(dlqs.depths().await),
        None => None,
    };
    Ok(OverviewData {
        window: window.name,
        overview,
        dlq,
    })
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    windows: Vec<&'static str>,
    data: OverviewData,
    /// Datasets (rows) by status (columns) for the table.
    datasets: Vec<(String, Vec<i64>)>,
    statuses: Vec<&'static str>,
}

const STATUSES: [&str; 9] = [
    "received",
    "sanitizing",
    "sanitized",
    "transforming",
    "transformed",
    "delivering",
    "delivered",
    "rejected",
    "failed",
];

pub async fn overview(
    Shared(state): Shared_,
    Query(q): Query<WindowQuery>,
) -> Result<Response, PageError> {
    let data = overview_data(&state, Window::parse(q.window.as_deref())).await?;
    let mut datasets: Vec<(String, Vec<i64>)> = Vec::new();
    for c in &data.overview.counts {
        if datasets.last().map(|d| &d.0) != Some(&c.dataset) {
            datasets.push((c.dataset.clone(), vec![0; STATUSES.len()]));
        }
        if let (Some(row), Some(i)) = (
            datasets.last_mut(),
            STATUSES.iter().position(|s| *s == c.status),
        ) {
            row.1[i] += c.files;
        }
    }
    Ok(render(&OverviewPage {
        windows: WINDOWS.iter().map(|w| w.name).collect(),
        data,
        datasets,
        statuses: STATUSES.to_vec(),
    }))
}

pub async fn overview_json(
    Shared(state): Shared_,
    Query(q): Query<WindowQuery>,
) -> Result<Json<OverviewData>, PageError> {
    Ok(Json(
        overview_data(&state, Window::parse(q.window.as_deref())).await?,
    ))
}

#[derive(Debug, Default, Deserialize)]
pub struct FilesQuery {
    dataset: Option<String>,
    status: Option<String>,
    site: Option<String>,
    q: Option<String>,
    window: Option<String>,
    before: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl FilesQuery {
    fn filter(&self) -> Result<FileFilter, PageError> {
        let status = nonempty(&self.status);
        if let Some(s) = &status {
            if !STATUSES.contains(&s.as_str()) {
                return Err(PageError::BadRequest(format!("unknown status {s:?}")));
            }
        }
        let before = match nonempty(&self.before) {
            Some(cursor) => Some(
                parse_cursor(&cursor)
                    .ok_or_else(|| PageError::BadRequest("bad page cursor".into()))?,
            ),
            None => None,
        };
        Ok(FileFilter {
            dataset: nonempty(&self.dataset),
            status,
            site: nonempty(&self.site),
            q: nonempty(&self.q),
            since: nonempty(&self.window).map(|w| Window::parse(Some(&w)).since()),
            before,
        })
    }

    /// This query's parameters with another page cursor, for links.
    fn with_before(&self, before: &str) -> String {
        let mut pairs = url_pairs(self);
        pairs.push(("before", before.to_string()));
        encode(&pairs)
    }
}

fn url_pairs(q: &FilesQuery) -> Vec<(&'static str, String)> {
    [
        ("dataset", &q.dataset),
        ("status", &q.status),
        ("site", &q.site),
        ("q", &q.q),
        ("window", &q.window),
    ]
    .into_iter()
    .filter_map(|(k, v)| nonempty(v).map(|v| (k, v)))
    .collect()
}

fn encode(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes a query value.
fn percent(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[derive(Template)]
#[template(path = "files.html")]
struct FilesPage {
    page: FilePage,
    datasets: Vec<String>,
    sites: Vec<String>,
    statuses: Vec<&'static str>,
    windows: Vec<&'static str>,
    dataset: String,
    status: String,
    site: String,
    q: String,
    window: String,
    next_link: Option<String>,
}

pub async fn files(
    Shared(state): Shared_,
    Query(query): Query<FilesQuery>,
) -> Result<Response, PageError> {
    let filter = query.filter()?;
    let queries = Queries { db: &state.db };
    let page = queries.files(&filter).await?;
    let (datasets, sites) = queries.choices().await?;
    let next_link = page.next.as_deref().map(|n| query.with_before(n));
    let text = |v: &Option<String>| nonempty(v).unwrap_or_default();
    Ok(render(&FilesPage {
        page,
        datasets,
        sites,
        statuses: STATUSES.to_vec(),
        windows: WINDOWS.iter().map(|w| w.name).collect(),
        dataset: text(&query.dataset),
        status: text(&query.status),
        site: text(&query.site),
        q: text(&query.q),
        window: text(&query.window),
        next_link,
    }))
}

pub async fn files_json(
    Shared(state): Shared_,
    Query(query): Query<FilesQuery>,
) -> Result<Json<FilePage>, PageError> {
    let filter = query.filter()?;
    Ok(Json(Queries { db: &state.db }.files(&filter).await?))
}

#[derive(Debug, Deserialize)]
pub struct FileQuery {
    calls_after: Option<i64>,
}

async fn file_data(state: &State, id: &str, q: &FileQuery) -> Result<FileDetail, PageError> {
    let id: Uuid = id
        .parse()
        .map_err(|_| PageError::NotFound(format!("{id:?} is not a file id")))?;
    Queries { db: &state.db }
        .file(id, q.calls_after)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("no file {id}")))
}

#[derive(Template)]
#[template(path = "file.html")]
struct FilePageView {
    f: FileDetail,
    /// `(label, value)` rows of the key figures.
    figures: Vec<(&'static str, String)>,
    /// The sanitize report's first rejected rows: line, column, reason.
    rejects: Vec<(String, String, String)>,
    cells: Vec<(String, String)>,
    transform_figures: Vec<(String, String)>,
    events: Vec<(String, String, String, String)>,
    /// For a file not final: what is happening to it, and what the listener will do.
    progress: Option<String>,
    /// Presigned links to its objects; `None` when the dashboard signs none.
    links: Option<Vec<Link>>,
}

fn cell<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "–".into(), T::to_string)
}

pub fn when(t: &Time) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub async fn file(
    Shared(state): Shared_,
    Path(id): Path<String>,
    Query(q): Query<FileQuery>,
) -> Result<Response, PageError> {
    let f = file_data(&state, &id, &q).await?;
    let figures = vec![
        ("rows in", cell(&f.rows_in)),
        ("rows out", cell(&f.rows_out)),
        ("rows rejected", cell(&f.rows_rejected)),
        ("rows unmapped", cell(&f.rows_unmapped)),
        ("records", cell(&f.records)),
        ("records new / changed / unchanged / missing", {
            let parts = [
                &f.records_new,
                &f.records_changed,
                &f.records_unchanged,
                &f.records_missing,
            ];
            match parts.iter().all(|p| p.is_none()) {
                true => "–".into(),
                false => parts
                    .iter()
                    .map(|p| cell(p))
                    .collect::<Vec<_>>()
                    .join(" / "),
            }
        }),
        (
            "batches delivered / sent",
            format!("{} / {}", cell(&f.batches_delivered), cell(&f.batches_sent)),
        ),
        (
            "claims (attempts) / re-drives / idle re-sends",
            format!("{} / {} / {}", f.attempts, f.redrives, f.resends),
        ),
        ("superseded by a newer upload", cell(&f.records_superseded)),
        ("uploaded", f.uploaded_at.as_ref().map_or("–".into(), when)),
    ];
    let summary = f.sanitize_summary();
    let rejects = summary
        .as_ref()
        .map(|s| {
            s.first_rejects
                .iter()
                .map(|r| {
                    (
                        r.line.to_string(),
                        r.column.clone().unwrap_or_default(),
                        r.reason.clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let cells = summary
        .as_ref()
        .map(|s| {
            s.cells
                .named()
                .iter()
                .map(|(name, n)| (name.to_string(), n.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let transform_figures = f
        .transform
        .as_ref()
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter(|(_, v)| !v.is_object() && !v.is_array() && !v.is_null())
                .map(|(k, v)| (k.replace('_', " "), plain(v)))
                .collect()
        })
        .unwrap_or_default();
    let events = f
        .events
        .iter()
        .map(|e| {
            (
                when(&e.at),
                e.stage.clone(),
                e.status.clone(),
                readable(&e.detail),
            )
        })
        .collect();
    let progress = progress(
        &f,
        state.stale_after,
        Time::from(std::time::SystemTime::now()),
    );
    let links = match &state.links {
        Some(links) => Some(links.for_file(&f).await),
        None => None,
    };
    Ok(render(&FilePageView {
        f,
        figures,
        rejects,
        cells,
        transform_figures,
        events,
        progress,
        links,
    }))
}

/// An event's detail as words: `key: value` pairs (nested objects flattened with dots, strings
/// without quotes), not JSON.
fn readable(detail: &Value) -> String {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                for (k, v) in o {
                    let key = match prefix {
                        "" => k.replace('_', " "),
                        p => format!("{p}.{}", k.replace('_', " ")),
                    };
                    walk(&key, v, out);
                }
            }
            Value::Null => {}
            // A list: each item in words, in parentheses.
            Value::Array(items) => {
                let items: Vec<String> =
                    items.iter().map(|i| format!("({})", readable(i))).collect();
                match prefix {
                    "" => out.push(items.join(" ")),
                    p => out.push(format!("{p}: {}", items.join(" "))),
                }
            }
            other if prefix.is_empty() => out.push(plain(other)),
            other => out.push(format!("{prefix}: {}", plain(other))),
        }
    }
    let mut out = Vec::new();
    walk("", detail, &mut out);
    out.join(", ")
}

/// What is happening to a file that is not final, and what the listener will do about it,
/// by the same rules as its sweep (`sluice_db::stuck_condition`).
fn progress(f: &FileDetail, stale: std::time::Duration, now: Time) -> Option<String> {
    const FINAL: [&str; 3] = ["delivered", "rejected", "failed"];
    if FINAL.contains(&f.status.as_str()) {
        return None;
    }
    if let (Some(owner), Some(until)) = (&f.lease_owner, &f.lease_until) {
        return Some(match *until > now {
            true => format!(
                "{owner} is working on it (its lease runs until {}).",
                when(until)
            ),
            false => format!(
                "Stuck: the lease of its worker ({owner}) lapsed at {}, so that worker died. The \
                 listener's next run re-drives it (re-drives so far: {}); after the limit of \
                 re-drives the file fails with the reason.",
                when(until),
                f.redrives
            ),
        });
    }
    let spacing = stale.as_secs_f64() * 2f64.powi(f.resends.clamp(0, 6));
    let idle_since = (now - f.updated_at).num_seconds() as f64;
    Some(match idle_since >= spacing {
        true => format!(
            "Idle since {}: no worker holds it. Its work is most likely waiting in its stage's \
             queue; the listener re-sends its input once that queue has no backlog (re-sends so \
             far: {}). A file is never failed for waiting.",
            when(&f.updated_at),
            f.resends
        ),
        false => format!(
            "Waiting for its next stage (last moved {}); if nothing moves it for {} s the \
             listener looks at it.",
            when(&f.updated_at),
            spacing as u64
        ),
    })
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub async fn file_json(
    Shared(state): Shared_,
    Path(id): Path<String>,
    Query(q): Query<FileQuery>,
) -> Result<Json<FileDetail>, PageError> {
    Ok(Json(file_data(&state, &id, &q).await?))
}

#[derive(Template)]
#[template(path = "health.html")]
struct HealthPage {
    windows: Vec<&'static str>,
    window: &'static str,
    rows: Vec<Health>,
}

pub async fn health(
    Shared(state): Shared_,
    Query(q): Query<WindowQuery>,
) -> Result<Response, PageError> {
    let window = Window::parse(q.window.as_deref());
    let rows = Queries { db: &state.db }.health(window.since()).await?;
    Ok(render(&HealthPage {
        windows: WINDOWS.iter().map(|w| w.name).collect(),
        window: window.name,
        rows,
    }))
}

#[derive(Serialize)]
pub struct HealthData {
    window: &'static str,
    datasets: Vec<Health>,
}

pub async fn health_json(
    Shared(state): Shared_,
    Query(q): Query<WindowQuery>,
) -> Result<Json<HealthData>, PageError> {
    let window = Window::parse(q.window.as_deref());
    let datasets = Queries { db: &state.db }.health(window.since()).await?;
    Ok(Json(HealthData {
        window: window.name,
        datasets,
    }))
}

#[derive(Template)]
#[template(path = "dlq.html")]
struct DeadLettersPage {
    queues: Option<Vec<DlqMessages>>,
}

/// The messages in the dead-letter queues; `None` when no queue is configured.
async fn dead_letter_data(state: &State) -> Option<Vec<DlqMessages>> {
    match &state.dlqs {
        Some(dlqs) => Some(dlqs.messages().await),
        None => None,
    }
}

pub async fn dead_letters(Shared(state): Shared_) -> Response {
    render(&DeadLettersPage {
        queues: dead_letter_data(&state).await,
    })
}

#[derive(Serialize)]
pub struct DeadLetterData {
    /// `null` when no dead-letter queue is configured (`SLUICE_DLQ_URLS`).
    queues: Option<Vec<DlqMessages>>,
}

pub async fn dead_letters_json(Shared(state): Shared_) -> Json<DeadLetterData> {
    Json(DeadLetterData {
        queues: dead_letter_data(&state).await,
    })
}

impl DeadLetter {
    /// The search of the file list for an object event's key.
    pub fn search_link(&self) -> Option<String> {
        self.search
            .as_deref()
            .map(|key| format!("/files?q={}", percent(key)))
    }
}

/// One bar of a trend's picture: where it stands, its height, its colour class and what it
/// says on hover.
pub struct Bar {
    pub x: usize,
    pub y: u32,
    pub height: u32,
    pub class: &'static str,
    pub title: String,
}

/// Pixels of a trend's picture.
const TREND_HEIGHT: u32 = 24;
const BAR_STEP: usize = 8;

fn bars(trend: &[TrendSlot]) -> Vec<Bar> {
    let most = trend.iter().map(|t| t.calls).max().unwrap_or(0).max(1);
    trend
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let height = match t.calls {
                0 => 1,
                n => ((n as f64 / most as f64) * TREND_HEIGHT as f64)
                    .ceil()
                    .max(2.0) as u32,
            };
            let rate = (t.calls > 0).then(|| t.ok as f64 / t.calls as f64);
            let class = match rate {
                None => "none",
                Some(r) if r >= 0.99 => "good",
                Some(r) if r >= 0.9 => "fair",
                Some(_) => "poor",
            };
            let title = match rate {
                None => format!("from {}: no call", when(&t.from)),
                Some(r) => format!(
                    "from {}: {} call(s), {:.1} % 2xx",
                    when(&t.from),
                    t.calls,
                    r * 100.0
                ),
            };
            Bar {
                x: i * BAR_STEP,
                y: TREND_HEIGHT - height,
                height,
                class,
                title,
            }
        })
        .collect()
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{:.1} %", v * 100.0))
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.0} ms"))
}

impl Overview {
    pub fn failure_pct(&self) -> String {
        pct(self.failure_rate)
    }

    pub fn rejection_pct(&self) -> String {
        pct(self.rejection_rate)
    }

    pub fn per_hour(&self) -> String {
        format!("{:.1}", self.files_per_hour)
    }
}

impl Health {
    pub fn success_pct(&self) -> String {
        pct(Some(self.success_rate))
    }

    pub fn p50(&self) -> String {
        ms(self.p50_ms)
    }

    pub fn p95(&self) -> String {
        ms(self.p95_ms)
    }

    pub fn error(&self) -> String {
        self.last_error.clone().unwrap_or_default()
    }

    /// The trend as bars of an inline picture (oldest left).
    pub fn bars(&self) -> Vec<Bar> {
        bars(&self.trend)
    }

    /// The trend's picture width in pixels.
    pub fn trend_width(&self) -> usize {
        self.trend.len() * BAR_STEP
    }

    /// The trend in words, for readers that do not see the picture.
    pub fn trend_words(&self) -> String {
        self.trend
            .iter()
            .map(|t| match t.calls {
                0 => "–".to_string(),
                n => format!("{:.0}%", t.ok as f64 * 100.0 / n as f64),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl DlqDepth {
    pub fn shown(&self) -> String {
        match (&self.messages, &self.error) {
            (Some(n), _) => n.to_string(),
            (None, Some(e)) => format!("unreadable: {e}"),
            (None, None) => "–".into(),
        }
    }
}

impl FileItem {
    pub fn dataset(&self) -> &str {
        self.dataset.as_deref().unwrap_or("–")
    }

    pub fn rows_in(&self) -> String {
        cell(&self.rows_in)
    }

    pub fn rejected(&self) -> String {
        cell(&self.rows_rejected)
    }

    pub fn records(&self) -> String {
        cell(&self.records)
    }

    pub fn received(&self) -> String {
        when(&self.received_at)
    }

    pub fn updated(&self) -> String {
        when(&self.updated_at)
    }

    pub fn batches(&self) -> String {
        match self.batches_sent {
            Some(sent) => format!("{}/{sent}", self.batches_delivered.unwrap_or(0)),
            None => "–".into(),
        }
    }

    pub fn short_error(&self) -> String {
        let e = self.error.as_deref().unwrap_or("");
        let mut out: String = e.chars().take(120).collect();
        if e.chars().count() > 120 {
            out.push('…');
        }
        out
    }
}

impl FileDetail {
    /// The sanitize outcome, read as the stage wrote it; `None` when there is none yet.
    pub fn sanitize_summary(&self) -> Option<SanitizeSummary> {
        self.sanitize
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    pub fn dataset(&self) -> &str {
        self.dataset.as_deref().unwrap_or("– (no dataset matched)")
    }

    pub fn received(&self) -> String {
        when(&self.received_at)
    }

    pub fn updated(&self) -> String {
        when(&self.updated_at)
    }

    pub fn lease(&self) -> String {
        match (&self.lease_owner, &self.lease_until) {
            (Some(owner), Some(until)) => format!("{owner} until {}", when(until)),
            _ => "–".into(),
        }
    }
}

impl crate::queries::Batch {
    pub fn last(&self) -> String {
        match (self.last_status, &self.last_error) {
            (Some(s), _) => format!("HTTP {s}"),
            (None, Some(e)) => e.clone(),
            (None, None) => "–".into(),
        }
    }

    pub fn at(&self) -> String {
        when(&self.last_at)
    }
}

impl crate::queries::Call {
    pub fn status(&self) -> String {
        self.http_status
            .map_or_else(|| "no answer".into(), |s| format!("HTTP {s}"))
    }

    pub fn latency(&self) -> String {
        self.latency_ms
            .map_or_else(|| "–".into(), |l| format!("{l} ms"))
    }

    pub fn when(&self) -> String {
        when(&self.at)
    }

    pub fn error(&self) -> String {
        self.error.clone().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_detail_reads_as_words() {
        let detail = serde_json::json!({
            "owner": "sanitizer/1", "cells": {"formulas_neutralized": 2}, "reason": null,
            "first_rejects": [{"line": 7}]
        });
        assert_eq!(
            readable(&detail),
            "cells.formulas neutralized: 2, first rejects: (line: 7), owner: sanitizer/1"
        );
        assert_eq!(readable(&serde_json::json!({})), "");
    }
}
