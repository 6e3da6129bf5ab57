//! Replicate predictions — not implemented yet: issue 4 fills this module in. The registry does
//! not route any provider here until it is.

use std::sync::Arc;

use crate::config::DeploymentConfig;

use super::ChatClient;

/// Replicate is not one request per answer (create, then wait or poll), so it is a client of
/// its own rather than a [`super::WireFormat`].
pub fn client(
    _d: &DeploymentConfig,
    _max_output_tokens: Option<u64>,
    _http: &reqwest::Client,
) -> Result<Arc<dyn ChatClient>, String> {
    Err("REPLICATE's predictions API is not implemented yet".into())
}
