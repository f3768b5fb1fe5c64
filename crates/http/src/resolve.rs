//! The name lookup every delivery goes through. An endpoint's host is resolved here, and every
//! address it resolves to is checked ([`Reach::check`]) before a connection is made to any:
//! a config writer cannot point a dataset at the VPC, this machine or the instance-metadata
//! service through a DNS name, and a name that changes its answer between lookups (DNS
//! rebinding) is checked again on each.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sluice_core::delivery::Reach;

/// A future of the addresses a name has.
pub type Lookingup = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;

/// How names become addresses: the system's resolver, or a test's table.
pub trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: &str) -> Lookingup;
}

/// The system's resolver (getaddrinfo, on tokio's blocking pool).
#[derive(Debug, Clone, Copy, Default)]
pub struct System;

impl Lookup for System {
    fn lookup(&self, host: &str) -> Lookingup {
        let host = host.to_string();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(found.map(|a| a.ip()).collect())
        })
    }
}

/// A lookup whose every answer must be within reach.
pub(crate) struct Checked {
    pub reach: Arc<Reach>,
    pub lookup: Arc<dyn Lookup>,
}

impl Resolve for Checked {
    fn resolve(&self, name: Name) -> Resolving {
        let (reach, lookup) = (self.reach.clone(), self.lookup.clone());
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addresses = lookup.lookup(&host).await?;
            if addresses.is_empty() {
                let none =
                    io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
                return Err(none.into());
            }
            for address in &addresses {
                reach.check(&host, *address)?;
            }
            let addrs: Addrs = Box::new(addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}
