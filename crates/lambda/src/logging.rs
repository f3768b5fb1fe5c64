//! JSON logs for CloudWatch. The level comes from `RUST_LOG` (or Lambda's
//! `AWS_LAMBDA_LOG_LEVEL`), but libraries that log whole events, request bodies or query
//! parameters below `info` (the Lambda runtime logs every raw event at `trace`; tokio-postgres
//! logs statement parameters at `debug`) are held at `info` or above whatever is asked: record
//! contents never reach the logs.

use tracing_subscriber::filter::{EnvFilter, LevelFilter};

/// Crates whose own logging below `info` may carry record contents.
const QUIET_BELOW_INFO: [&str; 11] = [
    "lambda_runtime",
    "lambda_runtime_api_client",
    "tokio_postgres",
    "aws_smithy_runtime",
    "aws_smithy_http_client",
    "aws_sdk_sqs",
    "aws_sdk_s3",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
];

/// Sets up the JSON subscriber once per container.
pub fn init_tracing() {
    let setting = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL").map(|l| l.to_lowercase()))
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_target(false)
        .with_env_filter(log_filter(&setting))
        .try_init();
}

/// The filter for a `RUST_LOG`-style `setting`: a bare level applies to Sluice's own crates
/// and, capped at `info`, to everything else; a directive list is taken as written. Either
/// way the crates in [`QUIET_BELOW_INFO`] never log below `info`.
pub fn log_filter(setting: &str) -> EnvFilter {
    let setting = setting.trim();
    let (mut directives, cap) = match setting.parse::<LevelFilter>() {
        Ok(level) => {
            let others = level.min(LevelFilter::INFO);
            (others.to_string(), others)
        }
        Err(_) => (setting.to_string(), LevelFilter::INFO),
    };
    for target in QUIET_BELOW_INFO {
        directives.push_str(&format!(",{target}={cap}"));
    }
    // Sluice's crates are `sluice_*`: a prefix directive needs each name.
    if let Ok(level) = setting.parse::<LevelFilter>() {
        for name in SLUICE_CRATES {
            directives.push_str(&format!(",{name}={level}"));
        }
    }
    EnvFilter::new(directives)
}

const SLUICE_CRATES: [&str; 7] = [
    "sluice_core",
    "sluice_db",
    "sluice_aws",
    "sluice_lambda",
    "sluice_sanitizer",
    "sluice_transformer",
    "sluice_forwarder",
];

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(setting: &str) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_env_filter(log_filter(setting))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            // What lambda_runtime 1.x logs for every invocation at trace level.
            tracing::trace!(target: "lambda_runtime::layers::api_response",
                body = r#"{"Records":[{"body":"{\"email\":\"ana@example.com\"}"}]}"#,
                "raw JSON event received from Lambda");
            tracing::debug!(target: "tokio_postgres::query",
                "executing statement s1 with parameters: [\"ana@example.com\"]");
            tracing::trace!(target: "sluice_forwarder::handler", "our own trace line");
            tracing::info!(target: "lambda_runtime::runtime", "runtime info line");
        });
        let text = out.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn records_stay_out_of_the_logs_at_every_level() {
        for setting in [
            "trace",
            "debug",
            "info",
            "trace,lambda_runtime=trace",
            "lambda_runtime=trace",
        ] {
            let text = logged(setting);
            assert!(!text.contains("ana@example.com"), "{setting}: {text}");
        }
        let text = logged("trace");
        assert!(text.contains("our own trace line"), "{text}");
        assert!(text.contains("runtime info line"), "{text}");
        assert!(!logged("warn").contains("runtime info line"));
    }
}
