//! What Sluice's stages do, written once over small capability traits ([`ports`]) that
//! adapters implement: AWS and PostgreSQL for the Lambdas, local ones for a machine without
//! services: [`sanitize`], [`transform`], [`forward`], the sweep's re-drives ([`redrive`]),
//! and the delivery engine ([`delivery`])
//! that [`forward`] and `sluice forward` share.

pub mod delivery;
pub mod fault;
pub mod final_status;
pub mod forward;
pub mod ports;
pub mod redrive;
pub mod sanitize;
pub mod transform;

pub use fault::{Fault, FaultKind};
