//! Per-origin cache of `FindProxyForURL` outcomes, failures included.
//!
//! The key is the URL's origin (scheme, host and port), not the full URL: a PAC is evaluated
//! once per origin per TTL, which is what makes it cheap on the request path. The cost, stated
//! plainly: a PAC that branches on the *path* of plain `http://` URLs sees only the first path
//! of an origin within the TTL. Browsers already hide the path of `https://` URLs from PACs.
//! Failures are cached too, so a looping PAC costs one time limit per origin and TTL, not one
//! per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{PacError, PacProxy};

/// Entries kept before expired ones are purged (and, if still full, all are dropped).
const MAX_ENTRIES: usize = 4096;

/// What an evaluation produced.
pub(crate) type Outcome = Result<Vec<PacProxy>, PacError>;

/// Outcomes by origin, each valid for `ttl` after it was stored.
#[derive(Debug)]
pub(crate) struct ResultCache {
    /// How long an entry is served; zero disables caching.
    ttl: Duration,
    /// Origin key -> (stored at, outcome).
    entries: Mutex<HashMap<String, (Instant, Outcome)>>,
}

impl ResultCache {
    /// An empty cache whose entries live `ttl`.
    pub(crate) fn new(ttl: Duration) -> ResultCache {
        ResultCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The cached outcome for `key` if it is younger than the TTL at `now`.
    pub(crate) fn get(&self, key: &str, now: Instant) -> Option<Outcome> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (stored, outcome) = entries.get(key)?;
        (now.saturating_duration_since(*stored) < self.ttl).then(|| outcome.clone())
    }

    /// Stores `outcome` for `key`, stamped `now`.
    pub(crate) fn put(&self, key: String, outcome: Outcome, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, (stored, _)| now.saturating_duration_since(*stored) < ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (now, outcome));
    }

    /// Forgets everything (network change, new script).
    pub(crate) fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// The cache key of `url`: its lower-cased `scheme://authority` (no user info, path or query),
/// or the host when the URL has no scheme.
pub(crate) fn origin_key(url: &str, host: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return host.to_ascii_lowercase();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let scheme = scheme.to_ascii_lowercase();
    // `https://h:443/` (how a CONNECT is usually shown to the PAC) and `https://h/` are one
    // origin (RFC 9110 §4.2).
    let default_port = match scheme.as_str() {
        "http" | "ws" => Some(":80"),
        "https" | "wss" => Some(":443"),
        _ => None,
    };
    let authority = match default_port {
        Some(port) => authority.strip_suffix(port).unwrap_or(authority),
        None => authority,
    };
    format!("{scheme}://{}", authority.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = ResultCache::new(Duration::from_secs(60));
        let t0 = Instant::now();
        cache.put("k".into(), Ok(vec![PacProxy::Direct]), t0);
        assert_eq!(
            cache.get("k", t0 + Duration::from_secs(59)),
            Some(Ok(vec![PacProxy::Direct]))
        );
        assert_eq!(cache.get("k", t0 + Duration::from_secs(60)), None);
        cache.clear();
        assert_eq!(cache.get("k", t0), None);
    }

    #[test]
    fn zero_ttl_caches_nothing() {
        let cache = ResultCache::new(Duration::ZERO);
        let t0 = Instant::now();
        cache.put("k".into(), Err(PacError::EngineGone), t0);
        assert_eq!(cache.get("k", t0), None);
    }

    #[test]
    fn origin_key_drops_path_query_and_user_info() {
        assert_eq!(
            origin_key("HTTP://user:pw@Example.COM:8080/a/b?q#f", "example.com"),
            "http://example.com:8080"
        );
        assert_eq!(origin_key("https://x.y/", "x.y"), "https://x.y");
        assert_eq!(origin_key("https://x.y:443/", "x.y"), "https://x.y");
        assert_eq!(origin_key("http://x.y:80", "x.y"), "http://x.y");
        assert_eq!(origin_key("http://[::1]:80/", "::1"), "http://[::1]");
        assert_eq!(origin_key("http://x.y:8080/", "x.y"), "http://x.y:8080");
        assert_eq!(origin_key("x.y:443", "X.y"), "x.y");
    }
}
