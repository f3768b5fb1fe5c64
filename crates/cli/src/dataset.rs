//! The `--dataset NAME --config FILE` pair of the commands that work on one dataset.

use std::path::PathBuf;

use sluice_core::{ConfigError, Dataset, PipelineConfig};

use crate::exit;

#[derive(Debug, clap::Args)]
pub struct DatasetArgs {
    /// Dataset (a `[datasets.NAME]` table of the config) whose settings apply.
    #[arg(long)]
    pub dataset: String,
    /// Pipeline config file (pipelines.toml).
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: PathBuf,
}

impl DatasetArgs {
    /// Loads the config and picks the dataset. On failure the reason is on standard error and
    /// the error is the exit code: 2 for a dataset the config does not have, 1 for a config
    /// that cannot be read or is not valid.
    pub fn load(&self) -> Result<Dataset, u8> {
        let config = PipelineConfig::load(&self.config).map_err(|e| {
            eprintln!("sluice: {e}");
            exit::OPERATIONAL
        })?;
        config.dataset(&self.dataset).cloned().map_err(|e| {
            eprintln!("sluice: {e}");
            match e {
                ConfigError::UnknownDataset { .. } => exit::USAGE,
                _ => exit::OPERATIONAL,
            }
        })
    }
}
