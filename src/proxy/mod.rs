//! The proxy service: listeners, client sessions, forwarding and CONNECT.

use std::future::Future;
use std::sync::Arc;

use crate::config::Config;

/// Why the proxy could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Placeholder until the proxy lands.
    #[error("the proxy is not built yet")]
    NotBuilt,
}

/// Runs the proxy on `config` until `shutdown` completes.
pub async fn run(
    _config: Arc<Config>,
    _shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    Err(RunError::NotBuilt)
}
