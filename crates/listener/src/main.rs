//! The listener Lambda: wiring only. Environment -> settings -> clients -> `run`.

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use sluice_lambda::init_tracing;
use sluice_listener::{handle, Deps};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let deps = match Deps::from_env().await {
        Ok(deps) => deps,
        Err(e) => {
            tracing::error!(error = %e, "listener cannot start");
            return Err(e.into());
        }
    };
    let bus = sluice_lambda::notify::event_bus().await;
    let (deps, bus) = (&deps, bus.as_ref());
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        let handled = handle(event, deps).await;
        sluice_lambda::notify::publish(&deps.store, bus, sluice_lambda::notify::AFTER_LISTENER_RUN)
            .await;
        handled
    }))
    .await
}
