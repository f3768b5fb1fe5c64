//! The book's examples are real: every TOML block in `docs/src` loads as part of the shipped
//! `pipelines.toml` (so a field the config no longer takes, or a value it refuses, fails here),
//! and every JSON message shown parses as the message type the stages send.

use std::path::{Path, PathBuf};

use sluice_core::message::{FileSanitized, RecordBatch};
use sluice_core::PipelineConfig;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `(page, language, text)` of each fenced block in the book.
fn blocks() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut pages: Vec<_> = std::fs::read_dir(repo().join("docs/src"))
        .expect("docs/src")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    for page in pages {
        let text = std::fs::read_to_string(&page).unwrap();
        let name = page.file_name().unwrap().to_string_lossy().to_string();
        let mut open: Option<(String, String)> = None;
        for line in text.lines() {
            match (&mut open, line.trim_start().strip_prefix("```")) {
                (None, Some(lang)) => open = Some((lang.trim().to_string(), String::new())),
                (Some(_), Some(_)) => {
                    let (lang, body) = open.take().unwrap();
                    out.push((name.clone(), lang, body));
                }
                (Some((_, body)), None) => {
                    body.push_str(line);
                    body.push('\n');
                }
                (None, None) => {}
            }
        }
    }
    out
}

/// `patch` laid over `base`: tables merge key by key, and an array of tables whose entries have
/// a `name` merges entry by entry (a field of the same name is replaced, a new one appended).
fn overlay(base: &mut toml::Value, patch: toml::Value) {
    match (base, patch) {
        (toml::Value::Table(base), toml::Value::Table(patch)) => {
            for (key, value) in patch {
                match base.get_mut(&key) {
                    Some(existing) => overlay(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (toml::Value::Array(base), toml::Value::Array(patch))
            if patch.iter().all(|v| v.get("name").is_some()) =>
        {
            for entry in patch {
                let name = entry.get("name").cloned();
                match base.iter_mut().find(|b| b.get("name") == name.as_ref()) {
                    Some(existing) => *existing = entry,
                    None => base.push(entry),
                }
            }
        }
        (base, patch) => *base = patch,
    }
}

#[test]
fn every_config_example_in_the_book_loads_with_the_shipped_config() {
    let shipped = std::fs::read_to_string(repo().join("pipelines.toml")).unwrap();
    let examples: Vec<_> = blocks()
        .into_iter()
        .filter(|(_, lang, _)| lang == "toml")
        .collect();
    assert!(
        examples.len() >= 5,
        "the config chapter's examples: {examples:?}"
    );
    for (page, _, text) in examples {
        let patch: toml::Value = toml::from_str(&text)
            .unwrap_or_else(|e| panic!("{page}: a TOML example does not parse: {e}\n{text}"));
        let mut config: toml::Value = toml::from_str(&shipped).unwrap();
        overlay(&mut config, patch);
        let merged = toml::to_string(&config).unwrap();
        if let Err(e) = PipelineConfig::parse(&merged, &page) {
            panic!("{page}: a TOML example is refused by the config loader: {e}\n{text}");
        }
    }
}

#[test]
fn every_message_shown_in_the_book_is_one_the_stages_send() {
    let id = "6f1c2d3e-0000-4000-8000-000000000001";
    let shown: Vec<_> = blocks()
        .into_iter()
        .filter(|(page, lang, _)| lang == "json" && page == "status-and-messages.md")
        .map(|(_, _, text)| text.replace("6f1c2d3e-…", id))
        .collect();
    let sanitized: Vec<_> = shown.iter().filter(|t| t.contains("clean_key")).collect();
    let batches: Vec<_> = shown.iter().filter(|t| t.contains("batch_id")).collect();
    assert_eq!((sanitized.len(), batches.len()), (1, 1), "{shown:#?}");
    let message: FileSanitized = serde_json::from_str(sanitized[0]).expect("file sanitized");
    assert_eq!(message.file_id.to_string(), id);
    let batch: RecordBatch = serde_json::from_str(batches[0]).expect("record batch");
    assert_eq!((batch.seq, batch.total), (2, 3));
}
