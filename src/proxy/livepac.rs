//! The PAC in force while the proxy runs: loaded at start (a failure is a warning, not a
//! crash), re-fetched every `Limits::pac_refetch` and on every network change, the last good
//! copy kept when a fetch fails or a new script does not load (issue 6 §1).
//!
//! A request asks [`LivePac::find`]; anything but a usable answer (no PAC yet, a script that
//! does not load, a call that loops or throws) is [`PacUnavailable`], and the router falls
//! back to the static `Proxy` list. Each distinct reason is logged once, not once per request.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use crate::config::ParentProxy;
use crate::pac::fetch::{PacLoader, PacSource, Refresh};
use crate::pac::{PacEngine, PacOptions, PacProxy};

/// Why the PAC gave no answer for a request (the router then uses the static parents).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacUnavailable {
    /// No script could be loaded so far (or none that compiles).
    #[error("no usable PAC loaded from {from}")]
    NotLoaded {
        /// The configured source.
        from: String,
    },
    /// The script ran but failed for this request (loop, throw, bad result).
    #[error("{0}")]
    Evaluation(String),
}

/// Where the PAC in use came from and when, for `--route` and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacStatus {
    /// Where the script finally came from (path, or URL after redirects).
    pub origin: String,
    /// When that copy was loaded.
    pub loaded_at: SystemTime,
}

/// The configured PAC, its engine and its last good copy.
pub struct LivePac {
    /// Where the PAC is loaded from (for messages).
    source: PacSource,
    /// Fetches and keeps the last good script text.
    loader: tokio::sync::Mutex<PacLoader>,
    /// The engine of the last script that loaded, shared by every request.
    engine: RwLock<Option<(Arc<PacEngine>, PacStatus)>>,
    /// `myIpAddress` is the address the OS would use toward this (the first static parent).
    my_ip_target: Option<ParentProxy>,
    /// Reasons already logged, so a broken PAC is one warning and not one per request.
    logged: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for LivePac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LivePac")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl LivePac {
    /// A PAC from `source`; nothing is loaded until [`LivePac::refresh`].
    pub fn new(source: PacSource, my_ip_target: Option<ParentProxy>) -> LivePac {
        LivePac {
            loader: tokio::sync::Mutex::new(PacLoader::new(source.clone())),
            source,
            engine: RwLock::new(None),
            my_ip_target,
            logged: Mutex::new(HashSet::new()),
        }
    }

    /// The configured source.
    pub fn source(&self) -> &PacSource {
        &self.source
    }

    /// Where the script in use came from and when, if one is loaded.
    pub fn status(&self) -> Option<PacStatus> {
        let engine = self.engine.read().unwrap_or_else(|p| p.into_inner());
        engine.as_ref().map(|(_, status)| status.clone())
    }

    /// Logs `message` at warn level unless the same message was logged before.
    pub fn warn_once(&self, message: String) {
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.insert(message.clone()) {
            tracing::warn!("{message}");
        }
    }

    /// Loads the PAC again; a changed script gets a new engine. Failures keep what is in use
    /// (the last good copy) and are logged. Returns whether a new script is now in use.
    pub async fn refresh(&self) -> bool {
        let mut loader = self.loader.lock().await;
        let refreshed = loader.refresh().await;
        let fresh_copy = loader.last_good().cloned();
        drop(loader);
        let loaded = match (refreshed, fresh_copy) {
            (Err(e), _) => {
                let kept = if self.status().is_some() {
                    "keeping the last good copy"
                } else {
                    "using the static Proxy list until it loads"
                };
                tracing::warn!(pac = %self.source, error = %e, "cannot load the PAC; {kept}");
                return false;
            }
            // Unchanged: the engine in use (or the failure already logged) stands.
            (Ok(Refresh::Unchanged), _) => {
                tracing::debug!(pac = %self.source, "PAC unchanged");
                return false;
            }
            (Ok(_), Some(loaded)) => loaded,
            (Ok(_), None) => return false,
        };
        let options = PacOptions::system(self.my_ip_target.clone());
        let script = loaded.script.clone();
        let built = tokio::task::spawn_blocking(move || PacEngine::new(script, options)).await;
        match built {
            Ok(Ok(engine)) => {
                let status = PacStatus {
                    origin: loaded.origin.clone(),
                    loaded_at: loaded.loaded_at,
                };
                *self.engine.write().unwrap_or_else(|p| p.into_inner()) =
                    Some((Arc::new(engine), status));
                tracing::info!(pac = %loaded.origin, "PAC loaded");
                true
            }
            Ok(Err(e)) => {
                let kept = if self.status().is_some() {
                    "keeping the previous script"
                } else {
                    "using the static Proxy list"
                };
                tracing::warn!(pac = %loaded.origin, error = %e, "the PAC does not load; {kept}");
                false
            }
            Err(e) => {
                tracing::warn!(pac = %loaded.origin, error = %e, "the PAC engine did not start");
                false
            }
        }
    }

    /// Forgets the engine's per-host answers (on a network change).
    pub fn clear_cache(&self) {
        let engine = self.engine.read().unwrap_or_else(|p| p.into_inner());
        if let Some((engine, _)) = engine.as_ref() {
            engine.clear_cache();
        }
    }

    /// `FindProxyForURL(url, host)` on the script in use.
    pub async fn find(&self, url: &str, host: &str) -> Result<Vec<PacProxy>, PacUnavailable> {
        let engine = {
            let guard = self.engine.read().unwrap_or_else(|p| p.into_inner());
            guard.as_ref().map(|(engine, _)| Arc::clone(engine))
        };
        let Some(engine) = engine else {
            return Err(PacUnavailable::NotLoaded {
                from: self.source.to_string(),
            });
        };
        engine
            .find_proxy(url, host)
            .await
            .map_err(|e| PacUnavailable::Evaluation(e.to_string()))
    }
}
