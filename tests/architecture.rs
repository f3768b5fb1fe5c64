//! The workspace's rules of shape, checked on the dependency graph cargo resolves for the whole
//! workspace (`cargo metadata`: features unified as `cargo build --workspace` unifies them):
//! - core reaches no other Sluice crate and no engine (an HTTP, AWS, PostgreSQL or Lambda
//!   crate);
//! - the stages reach core and nothing else of Sluice, and no engine;
//! - an adapter (aws, db, http, local) reaches no other adapter;
//! - the `sluice` binary, and the dashboard library it links, reach no Lambda crate;
//! - no crate but the end-to-end tests depends on a Lambda binary's crate;
//! - each outside system has one adapter: only `sluice-aws` links the AWS SDK, only
//!   `sluice-http` reqwest, only `sluice-db` tokio-postgres and refinery (and the dashboard,
//!   whose read model is SQL over its own views, through `sluice-db`'s connection), only
//!   `sluice-lambda` and the Lambda binaries the Lambda runtime.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

/// Crates that talk to the outside world or host a runtime: only adapters and binaries may
/// reach them.
const ENGINES: &[&str] = &[
    "reqwest",
    "hyper",
    "axum",
    "aws-config",
    "aws-sdk-s3",
    "aws-sdk-sqs",
    "aws-sdk-secretsmanager",
    "aws-sdk-eventbridge",
    "tokio-postgres",
    "refinery",
    "lambda_runtime",
    "lambda_http",
];
const ADAPTERS: &[&str] = &["sluice-aws", "sluice-db", "sluice-http", "sluice-local"];
const LAMBDA_RUNTIME: &[&str] = &["lambda_runtime", "lambda_http", "sluice-lambda"];
/// Each outside system's client crates, and the only workspace members that may link them
/// directly (tests' dev-dependencies aside).
const OWNERS: &[(&[&str], &[&str])] = &[
    (
        &[
            "aws-config",
            "aws-sdk-s3",
            "aws-sdk-sqs",
            "aws-sdk-secretsmanager",
            "aws-sdk-eventbridge",
        ],
        &["sluice-aws"],
    ),
    (&["reqwest"], &["sluice-http"]),
    (
        &["tokio-postgres", "refinery"],
        &["sluice-db", "sluice-dashboard"],
    ),
    (
        &["lambda_runtime", "lambda_http"],
        &[
            "sluice-lambda",
            "sluice-sanitizer",
            "sluice-transformer",
            "sluice-forwarder",
            "sluice-listener",
            "sluice-dashboard-lambda",
        ],
    ),
];
const LAMBDAS: &[&str] = &[
    "sluice-sanitizer",
    "sluice-transformer",
    "sluice-forwarder",
    "sluice-listener",
    "sluice-dashboard-lambda",
];

/// Package name -> the names of its normal (linked) dependencies, from `cargo metadata`.
struct Graph {
    deps: HashMap<String, BTreeSet<String>>,
    members: BTreeSet<String>,
}

impl Graph {
    fn from_metadata(metadata: &Value) -> Graph {
        let name_of: HashMap<&str, &str> = metadata["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
            .collect();
        let mut deps: HashMap<String, BTreeSet<String>> = HashMap::new();
        for node in metadata["resolve"]["nodes"].as_array().expect("resolve") {
            let from = name_of[node["id"].as_str().unwrap()].to_string();
            let linked = node["deps"].as_array().into_iter().flatten().filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|k| k["kind"].is_null())
            });
            let entry = deps.entry(from).or_default();
            for dep in linked {
                entry.insert(name_of[dep["pkg"].as_str().unwrap()].to_string());
            }
        }
        let members = metadata["workspace_members"]
            .as_array()
            .expect("workspace_members")
            .iter()
            .map(|id| name_of[id.as_str().unwrap()].to_string())
            .collect();
        Graph { deps, members }
    }

    /// Every crate `from` links, directly or through others.
    fn reaches(&self, from: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(next) = todo.pop() {
            for dep in self.deps.get(&next).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    todo.push(dep.clone());
                }
            }
        }
        seen
    }

    /// The rules broken, each in words with the path that breaks it.
    fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut forbid = |from: &str, what: &str, rule: &str| {
            if self.members.contains(from) && self.reaches(from).contains(what) {
                out.push(format!(
                    "{from} reaches {what} ({rule}): {}",
                    self.path(from, what)
                ));
            }
        };
        for engine in ENGINES {
            forbid("sluice-core", engine, "core reaches no engine");
            forbid("sluice-stages", engine, "the stages reach no engine");
        }
        for member in &self.members {
            if member != "sluice-core" {
                forbid("sluice-core", member, "core reaches no other Sluice crate");
            }
            if member != "sluice-core" && member != "sluice-stages" {
                forbid("sluice-stages", member, "the stages reach core alone");
            }
        }
        for adapter in ADAPTERS {
            for other in ADAPTERS.iter().filter(|o| o != &adapter) {
                forbid(adapter, other, "an adapter reaches no other adapter");
            }
        }
        for runtime in LAMBDA_RUNTIME {
            forbid(
                "sluice-cli",
                runtime,
                "the sluice binary links no Lambda crate",
            );
            forbid(
                "sluice-dashboard",
                runtime,
                "the dashboard library links no Lambda crate",
            );
        }
        for (engines, owners) in OWNERS {
            let bound = |m: &&String| !owners.contains(&m.as_str()) && m.as_str() != "sluice-e2e";
            for member in self.members.iter().filter(bound) {
                for engine in engines.iter().filter(|e| self.links_directly(member, e)) {
                    out.push(format!(
                        "{member} links {engine} itself (an outside system has one adapter: {})",
                        owners.join(", ")
                    ));
                }
            }
        }
        for member in self.members.iter().filter(|m| m.as_str() != "sluice-e2e") {
            for lambda in LAMBDAS.iter().filter(|l| *l != member) {
                if self.deps.get(member).is_some_and(|d| d.contains(*lambda)) {
                    out.push(format!(
                        "{member} depends on {lambda} (a Lambda binary's crate is nobody's library)"
                    ));
                }
            }
        }
        out
    }

    /// Whether `from` names `to` among its own (linked) dependencies.
    fn links_directly(&self, from: &str, to: &str) -> bool {
        self.deps.get(from).is_some_and(|d| d.contains(to))
    }

    /// One chain of dependencies from `from` to `to`, for the message.
    fn path(&self, from: &str, to: &str) -> String {
        let mut came_from: HashMap<String, String> = HashMap::new();
        let mut todo = std::collections::VecDeque::from([from.to_string()]);
        while let Some(next) = todo.pop_front() {
            if next == to {
                let mut chain = vec![to.to_string()];
                while let Some(prev) = came_from.get(chain.last().unwrap()) {
                    chain.push(prev.clone());
                }
                chain.reverse();
                return chain.join(" -> ");
            }
            for dep in self.deps.get(&next).into_iter().flatten() {
                if dep != from && !came_from.contains_key(dep) {
                    came_from.insert(dep.clone(), next.clone());
                    todo.push_back(dep.clone());
                }
            }
        }
        format!("{from} -> ... -> {to}")
    }
}

/// This machine's target triple (what the graph is resolved for: other platforms' crates are
/// neither linked here nor downloaded).
fn host() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_string()
}

fn workspace_metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host()])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata's JSON")
}

#[test]
fn the_workspace_keeps_its_shape() {
    let graph = Graph::from_metadata(&workspace_metadata());
    for crate_ in ["sluice-core", "sluice-stages", "sluice-cli", "sluice-http"] {
        assert!(graph.members.contains(crate_), "{crate_} is a member");
    }
    let broken = graph.violations();
    assert!(
        broken.is_empty(),
        "the rules of shape:\n{}",
        broken.join("\n")
    );
}

/// A small graph in `cargo metadata`'s form: `(package, [normal deps])`, each a member.
fn metadata(edges: &[(&str, &[&str])]) -> Value {
    let id = |n: &str| format!("path+file:///w#{n}@0.1.0");
    let packages: Vec<Value> = edges
        .iter()
        .flat_map(|(p, ds)| std::iter::once(*p).chain(ds.iter().copied()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|n| serde_json::json!({"id": id(n), "name": n}))
        .collect();
    let nodes: Vec<Value> = edges
        .iter()
        .map(|(p, ds)| {
            serde_json::json!({
                "id": id(p),
                "deps": ds.iter().map(|d| serde_json::json!({
                    "pkg": id(d), "dep_kinds": [{"kind": null}]
                })).collect::<Vec<_>>()
            })
        })
        .collect();
    let members: Vec<String> = edges
        .iter()
        .filter(|(p, _)| p.starts_with("sluice-"))
        .map(|(p, _)| id(p))
        .collect();
    serde_json::json!({"packages": packages, "resolve": {"nodes": nodes}, "workspace_members": members})
}

#[test]
fn each_broken_rule_is_named_with_its_path() {
    let graph = Graph::from_metadata(&metadata(&[
        ("sluice-core", &["serde"]),
        ("sluice-stages", &["sluice-core", "sluice-http"]),
        ("sluice-http", &["sluice-stages", "reqwest"]),
        ("sluice-aws", &["sluice-stages", "sluice-db"]),
        ("sluice-db", &["sluice-stages"]),
        ("sluice-dashboard", &["sluice-db", "sluice-lambda"]),
        ("sluice-lambda", &["lambda_runtime"]),
        (
            "sluice-cli",
            &["sluice-dashboard", "sluice-forwarder", "aws-sdk-sqs"],
        ),
        ("sluice-forwarder", &["sluice-lambda"]),
        ("reqwest", &["hyper"]),
    ]));
    let broken = graph.violations();
    let has = |text: &str| broken.iter().any(|b| b.contains(text));
    assert!(
        has("sluice-stages reaches reqwest (the stages reach no engine): sluice-stages -> sluice-http -> reqwest"),
        "{broken:#?}"
    );
    assert!(
        has("sluice-aws reaches sluice-db (an adapter reaches no other adapter)"),
        "{broken:#?}"
    );
    assert!(
        has("sluice-cli reaches lambda_runtime (the sluice binary links no Lambda crate): sluice-cli -> sluice-dashboard -> sluice-lambda -> lambda_runtime"),
        "{broken:#?}"
    );
    assert!(has("sluice-cli depends on sluice-forwarder"), "{broken:#?}");
    assert!(
        has("sluice-cli links aws-sdk-sqs itself (an outside system has one adapter: sluice-aws)"),
        "{broken:#?}"
    );
    assert!(!has("sluice-core reaches"), "{broken:#?}");
    // And a sound graph breaks none.
    let sound = Graph::from_metadata(&metadata(&[
        ("sluice-core", &["serde"]),
        ("sluice-stages", &["sluice-core"]),
        ("sluice-http", &["sluice-stages", "reqwest"]),
        ("sluice-cli", &["sluice-http"]),
    ]));
    assert_eq!(sound.violations(), Vec::<String>::new());
}
