//! What Sluice's stages do, written once over small capability traits ([`ports`]) that
//! adapters implement: AWS and PostgreSQL for the Lambdas, local ones for a machine without
//! services: [`sanitize`], [`transform`], and the delivery engine ([`delivery`]) that the forwarder Lambda
//! and `sluice forward` share.

pub mod delivery;
pub mod fault;
pub mod ports;
pub mod sanitize;
pub mod transform;

pub use fault::{Fault, FaultKind};
