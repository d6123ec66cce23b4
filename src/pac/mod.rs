//! PAC (proxy auto-config): evaluating the corporate `FindProxyForURL` to pick parents.
//!
//! - [`PacEngine`] runs the script in QuickJS on one dedicated OS thread, with a memory cap and
//!   a per-call time limit, and caches results per origin ([`DEFAULT_CACHE_TTL`]).
//! - [`parse_pac_result`] turns the returned string into [`PacProxy`] values.
//! - [`fetch`] loads a PAC from a file or an `http://` URL and keeps the last good copy.
//! - [`served_pac`] is the PAC cntlm serves to clients that only take a PAC URL.
//! - [`PacNetwork`] and [`PacClock`] are the seams to the machine (DNS, local address, time),
//!   so tests never depend on the host's network or the time of day.
//!
//! ```no_run
//! # async fn route() -> Result<(), Box<dyn std::error::Error>> {
//! use cntlm::pac::fetch::{PacLoader, PacSource};
//! use cntlm::pac::{PacEngine, PacOptions, PacProxy};
//!
//! let mut loader = PacLoader::new(PacSource::parse("http://wpad.corp.example/wpad.dat")?);
//! loader.refresh().await?; // then every fetch::PAC_REFETCH_INTERVAL and on network change
//! let script = loader.last_good().map(|pac| pac.script.clone()).unwrap_or_default();
//! let engine = PacEngine::new(script, PacOptions::system(None))?;
//! for choice in engine.find_proxy("https://example.com:443/", "example.com").await? {
//!     match choice {
//!         PacProxy::Direct => { /* connect to the origin */ }
//!         PacProxy::Proxy { kind, host, port } => { /* try this parent, then the next */ }
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Without the `pac` cargo feature the engine is absent: [`PacEngine::new`] returns
//! [`PacError::Unsupported`], while parsing, fetching and the served PAC still work.

use std::sync::Arc;
use std::time::Duration;

use crate::config::ParentProxy;

pub mod fetch;
mod network;
pub mod result;
mod served;

#[cfg(feature = "pac")]
mod cache;
#[cfg(feature = "pac")]
mod engine;
#[cfg(feature = "pac")]
mod helpers;

pub use network::{CivilTime, PacClock, PacNetwork, SystemClock, SystemNetwork, TimeZoneChoice};
pub use result::{PacProxy, PacProxyKind, PacResultError, parse_pac_result};
pub use served::served_pac;

/// How long a `FindProxyForURL` result is reused for the same origin (scheme, host, port).
///
/// Short, so a PAC that depends on DNS or the time of day catches up quickly; the router also
/// calls [`PacEngine::clear_cache`] on a network change.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
/// Default wall-clock budget of one `FindProxyForURL` call, DNS lookups included.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(5);
/// Default memory cap of the QuickJS runtime.
pub const DEFAULT_MEMORY_LIMIT: usize = 32 * 1024 * 1024;
/// Default time one DNS lookup made by the PAC may take before it counts as failed.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a PAC could not be evaluated. Clone, because failures are cached like results.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacError {
    /// This build has no JavaScript engine (the `pac` feature is off).
    #[error("PAC support is not compiled in (cargo feature `pac`)")]
    Unsupported,
    /// The script does not compile or its top-level code threw.
    #[error("PAC script does not load: {message}")]
    Load {
        /// QuickJS's message, e.g. `SyntaxError: unexpected token in expression: ')'`.
        message: String,
    },
    /// The script defines no `FindProxyForURL` (nor `FindProxyForURLEx`).
    #[error("PAC script defines no FindProxyForURL function")]
    NoEntryPoint,
    /// The call (or the script's top-level code) ran past the time limit and was interrupted.
    #[error("PAC evaluation ran longer than {limit:?} and was stopped")]
    Timeout {
        /// The configured limit.
        limit: Duration,
    },
    /// The script allocated more than the memory limit.
    #[error("PAC evaluation exceeded the {limit} byte memory limit")]
    MemoryLimit {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// `FindProxyForURL` threw.
    #[error("FindProxyForURL threw: {message}")]
    Script {
        /// The exception's message.
        message: String,
    },
    /// `FindProxyForURL` returned something other than a string.
    #[error("FindProxyForURL returned a {type_name}, not a string")]
    NotAString {
        /// The JavaScript type of what it returned.
        type_name: String,
    },
    /// The returned string is not a valid PAC result.
    #[error("FindProxyForURL returned an invalid result")]
    BadResult(#[from] PacResultError),
    /// The engine thread is gone (it could not start, or panicked).
    #[error("the PAC engine thread is not running")]
    EngineGone,
}

/// How a [`PacEngine`] evaluates scripts.
#[derive(Clone)]
pub struct PacOptions {
    /// Budget of one call, DNS included ([`DEFAULT_TIME_LIMIT`]).
    pub time_limit: Duration,
    /// Memory cap of the JavaScript heap in bytes ([`DEFAULT_MEMORY_LIMIT`]).
    pub memory_limit: usize,
    /// How long results are reused per origin; zero disables the cache ([`DEFAULT_CACHE_TTL`]).
    pub cache_ttl: Duration,
    /// DNS and local-address source for `dnsResolve`, `isInNet`, `myIpAddress` and friends.
    pub network: Arc<dyn PacNetwork>,
    /// Date and time source for `weekdayRange`, `dateRange` and `timeRange`.
    pub clock: Arc<dyn PacClock>,
}

impl PacOptions {
    /// Defaults on the system resolver and clock; `myIpAddress` is the address the OS would
    /// use toward `my_ip_target` (usually the first configured parent, or a corporate host the
    /// user names), or 127.0.0.1 without one.
    pub fn system(my_ip_target: Option<ParentProxy>) -> PacOptions {
        PacOptions {
            time_limit: DEFAULT_TIME_LIMIT,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            cache_ttl: DEFAULT_CACHE_TTL,
            network: Arc::new(SystemNetwork::new(my_ip_target, DEFAULT_DNS_TIMEOUT)),
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for PacOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacOptions")
            .field("time_limit", &self.time_limit)
            .field("memory_limit", &self.memory_limit)
            .field("cache_ttl", &self.cache_ttl)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "pac")]
pub use engine::PacEngine;

/// The PAC engine of a build without the `pac` feature: it cannot be constructed.
#[cfg(not(feature = "pac"))]
#[derive(Debug)]
pub struct PacEngine {
    /// No value of this type exists, so neither does a `PacEngine`.
    never: std::convert::Infallible,
}

#[cfg(not(feature = "pac"))]
impl PacEngine {
    /// Always [`PacError::Unsupported`]: this build has no JavaScript engine.
    pub fn new(_script: String, _options: PacOptions) -> Result<PacEngine, PacError> {
        Err(PacError::Unsupported)
    }

    /// Unreachable: no engine exists in this build.
    pub async fn find_proxy(&self, _url: &str, _host: &str) -> Result<Vec<PacProxy>, PacError> {
        match self.never {}
    }

    /// Unreachable: no engine exists in this build.
    pub fn clear_cache(&self) {
        match self.never {}
    }
}

#[cfg(all(test, not(feature = "pac")))]
mod tests {
    use super::*;

    #[test]
    fn without_the_feature_pac_is_reported_unsupported() {
        let got = PacEngine::new("function FindProxyForURL(u,h){return 'DIRECT';}".into(), {
            PacOptions::system(None)
        });
        assert!(matches!(got, Err(PacError::Unsupported)));
    }
}
