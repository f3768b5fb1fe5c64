//! The Grafana provisioning files (deploy/grafana): the datasource's pinned uid is the one
//! every panel names, panels read only the dashboard views, and every panel's query (its
//! Grafana macros expanded as Grafana would) runs as the read-only role against a seeded
//! store.

mod common;

use common::{seed, Schema};
use serde_json::Value;

fn grafana(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana");
    std::fs::read_to_string(root.join(path)).unwrap()
}

/// Grafana's SQL macros and the dashboard's variable, as Grafana expands them for a 24 h
/// range and the "All" choice.
fn expand(sql: &str) -> String {
    let mut out = sql.replace("$dataset", "'All'");
    for (name, with) in [
        ("$__timeGroupAlias(", "date_trunc('hour', {}) AS time"),
        (
            "$__timeFilter(",
            "{} BETWEEN now() - interval '1 day' AND now()",
        ),
    ] {
        while let Some(start) = out.find(name) {
            let args_at = start + name.len();
            let end = args_at + out[args_at..].find(')').unwrap();
            let column = out[args_at..end]
                .split(',')
                .next()
                .unwrap()
                .trim()
                .to_string();
            out.replace_range(start..=end, &with.replace("{}", &column));
        }
    }
    out
}

fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(
            panel["datasource"]["uid"], "sluice-postgres",
            "{}",
            panel["title"]
        );
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"]["uid"], "sluice-postgres");
            out.push((
                panel["title"].as_str().unwrap().to_string(),
                target["rawSql"].as_str().unwrap().to_string(),
            ));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        out.push((
            format!("variable {}", variable["name"]),
            variable["query"].as_str().unwrap().to_string(),
        ));
    }
    out
}

#[test]
fn the_datasource_uid_is_pinned_and_panels_read_only_the_views() {
    let datasource = grafana("provisioning/datasources/sluice.yaml");
    assert!(datasource.contains("uid: sluice-postgres"), "{datasource}");
    assert!(grafana("provisioning/dashboards/sluice.yaml")
        .contains("path: /var/lib/grafana/dashboards/sluice"));
    let dashboard: Value = serde_json::from_str(&grafana("dashboards/sluice.json")).unwrap();
    assert_eq!(dashboard["uid"], "sluice-overview");
    let queries = queries(&dashboard);
    assert!(queries.len() >= 7);
    for (title, sql) in &queries {
        for word in sql.split(|c: char| !c.is_alphanumeric() && c != '_') {
            assert!(
                !["file_process", "file_event", "api_call", "record_state"].contains(&word),
                "{title} reads a table, not a view: {sql}"
            );
        }
    }
}

#[tokio::test]
async fn every_panel_query_runs_as_the_read_only_role() {
    let schema = Schema::create().await;
    seed(&schema).await;
    let reader = schema
        .config
        .clone()
        .read_only_as(sluice_dashboard::ROLE)
        .connect()
        .await
        .unwrap();
    let dashboard: Value = serde_json::from_str(&grafana("dashboards/sluice.json")).unwrap();
    for (title, sql) in queries(&dashboard) {
        let sql = expand(&sql);
        let rows = reader
            .query(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{title}: {e:?}\n{sql}"));
        assert!(
            !rows.is_empty(),
            "{title} found nothing in a seeded store:\n{sql}"
        );
    }
    schema.drop().await;
}
