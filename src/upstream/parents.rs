//! Parent proxies and their health: tried in order, a dead one backed off for
//! `Limits::parent_backoff` and then probed again, so traffic returns to the first parent as
//! soon as it is back (CNTLM 0.92.3 never returns to it).
//!
//! Health is kept per parent *identity* (host, port), not per position in the `Proxy` list,
//! because a PAC names parents per request: the same parent may appear in the static list, in
//! several PAC answers, or only in a PAC answer, and its back-off must be the same everywhere.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::config::ParentProxy;
use crate::upstream::UpstreamError;

/// The static parents and the health of every parent seen, shared by every session.
#[derive(Debug)]
pub struct ParentSet {
    /// Parents in configuration order (`Proxy` lines): the route when no PAC answers.
    parents: Vec<ParentProxy>,
    /// Per parent identity: skip it until this instant (it refused or timed out).
    down_until: Mutex<HashMap<ParentProxy, Instant>>,
    /// Whether we are in the "every parent down, going DIRECT" state (logged once per switch).
    direct_fallback_active: AtomicBool,
    /// Connect timeout per attempt.
    connect_timeout: Duration,
    /// How long a failed parent is skipped.
    backoff: Duration,
}

impl ParentSet {
    /// A set over the static `parents`, all presumed alive.
    pub fn new(parents: Vec<ParentProxy>, connect_timeout: Duration, backoff: Duration) -> Self {
        ParentSet {
            parents,
            down_until: Mutex::new(HashMap::new()),
            direct_fallback_active: AtomicBool::new(false),
            connect_timeout,
            backoff,
        }
    }

    /// Whether there is no static parent at all.
    pub fn is_empty(&self) -> bool {
        self.parents.is_empty()
    }

    /// The static parents, in configuration order.
    pub fn configured(&self) -> &[ParentProxy] {
        &self.parents
    }

    /// Whether `parent` is one of the static (`Proxy`) parents.
    pub fn is_configured(&self, parent: &ParentProxy) -> bool {
        self.parents.contains(parent)
    }

    /// Whether `parent` is currently backed off.
    pub fn is_backed_off(&self, parent: &ParentProxy) -> bool {
        let now = Instant::now();
        let down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        down.get(parent).is_some_and(|&until| until > now)
    }

    /// The order to try `list` in now: live ones in the given order, then (only when every
    /// one is backed off) all of them, so one lucky probe can bring one back.
    pub fn candidates_among(&self, list: &[ParentProxy]) -> Vec<ParentProxy> {
        let alive: Vec<ParentProxy> = list
            .iter()
            .filter(|p| !self.is_backed_off(p))
            .cloned()
            .collect();
        if alive.is_empty() {
            list.to_vec()
        } else {
            alive
        }
    }

    /// Marks a parent as failed: it is skipped for the back-off period.
    pub fn mark_down(&self, parent: &ParentProxy) {
        let mut down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        let until = Instant::now() + self.backoff;
        if down.insert(parent.clone(), until).is_none() {
            tracing::warn!(parent = %parent, backoff_s = self.backoff.as_secs(), "parent proxy marked down");
        }
    }

    /// Marks a parent as working again.
    pub fn mark_up(&self, parent: &ParentProxy) {
        let mut down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        if down.remove(parent).is_some() {
            tracing::info!(parent = %parent, "parent proxy is back");
        }
    }

    /// Forgets every dead mark (on a network change: what was dead on the old network says
    /// nothing about the new one).
    pub fn clear_marks(&self) {
        let mut down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        down.clear();
    }

    /// Records that a request goes DIRECT because no parent answered; logs only the switch.
    pub fn enter_direct_fallback(&self, why: &UpstreamError) {
        if !self.direct_fallback_active.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %why, "no parent proxy reachable: going DIRECT until one answers");
        }
    }

    /// Records that a parent answered; logs only the switch back from DIRECT.
    fn leave_direct_fallback(&self, parent: &ParentProxy) {
        if self.direct_fallback_active.swap(false, Ordering::Relaxed) {
            tracing::info!(parent = %parent, "a parent proxy answers again: leaving DIRECT");
        }
    }

    /// Connects to the first static parent that answers.
    pub async fn connect(&self) -> Result<(ParentProxy, TcpStream), UpstreamError> {
        self.connect_among(&self.parents).await
    }

    /// Connects to the first parent of `list` that answers (live ones first, see
    /// [`ParentSet::candidates_among`]); returns which one.
    pub async fn connect_among(
        &self,
        list: &[ParentProxy],
    ) -> Result<(ParentProxy, TcpStream), UpstreamError> {
        let mut tried = Vec::new();
        for parent in self.candidates_among(list) {
            match self.try_connect(&parent).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    self.mark_up(&parent);
                    self.leave_direct_fallback(&parent);
                    return Ok((parent, stream));
                }
                Err(why) => tried.push(format!("{parent}: {why}")),
            }
            self.mark_down(&parent);
        }
        Err(UpstreamError::AllParentsDown {
            tried: if tried.is_empty() {
                "none".to_string()
            } else {
                tried.join("; ")
            },
        })
    }

    /// One connection attempt within the connect timeout; the error is for messages.
    pub async fn try_connect(&self, parent: &ParentProxy) -> Result<TcpStream, String> {
        match tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((parent.host.as_str(), parent.port)),
        )
        .await
        {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer in {} s", self.connect_timeout.as_secs())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(host: &str, port: u16) -> ParentProxy {
        ParentProxy {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn health_is_per_identity_not_per_position() {
        let set = ParentSet::new(
            vec![p("a", 1), p("b", 2)],
            Duration::from_secs(1),
            Duration::from_secs(60),
        );
        // A PAC-only parent gets a mark too, and the mark follows it into any list.
        set.mark_down(&p("c", 3));
        assert_eq!(
            set.candidates_among(&[p("c", 3), p("a", 1)]),
            vec![p("a", 1)]
        );
        set.mark_down(&p("a", 1));
        assert_eq!(set.candidates_among(set.configured()), vec![p("b", 2)]);
        // Everything down: try them all, in order.
        assert_eq!(
            set.candidates_among(&[p("c", 3), p("a", 1)]),
            vec![p("c", 3), p("a", 1)]
        );
        set.clear_marks();
        assert!(!set.is_backed_off(&p("c", 3)));
        assert!(set.is_configured(&p("b", 2)) && !set.is_configured(&p("c", 3)));
    }
}
