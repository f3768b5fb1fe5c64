//! What Sluice's stages do, written once over small capability traits ([`ports`]) that
//! adapters implement: AWS and PostgreSQL for the Lambdas, local ones for a machine without
//! services: [`sanitize`], [`transform`], [`forward`], the sweep's re-drives ([`redrive`]), and
//! the delivery decisions ([`delivery`]: targets, attempts with backoff) that [`forward`] and
//! `sluice forward` share.
//!
//! Boundary: reaches core and nothing else of Sluice, and no engine crate (no AWS SDK, no
//! PostgreSQL driver, no HTTP client, no Lambda runtime): the POST itself is `sluice-http`'s,
//! behind the [`ports::Poster`] port (checked by `tests/architecture.rs`).

pub mod delivery;
pub mod fault;
pub mod final_status;
pub mod forward;
pub mod pin;
pub mod ports;
pub mod redrive;
pub mod sanitize;
pub mod transform;

pub use fault::{Fault, FaultKind};
