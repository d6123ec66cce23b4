//! The configured parent proxies: tried in order, a dead one backed off for
//! `Limits::parent_backoff` and then probed again, so traffic returns to the first parent as
//! soon as it is back (CNTLM 0.92.3 never returns to it).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::config::ParentProxy;
use crate::upstream::UpstreamError;

/// The parents and their health, shared by every session.
#[derive(Debug)]
pub struct ParentSet {
    /// Parents in configuration order.
    parents: Vec<ParentProxy>,
    /// Per parent: skip it until this instant (it refused or timed out).
    down_until: Mutex<Vec<Option<Instant>>>,
    /// Connect timeout per attempt.
    connect_timeout: Duration,
    /// How long a failed parent is skipped.
    backoff: Duration,
}

impl ParentSet {
    /// A set over `parents`, all presumed alive.
    pub fn new(parents: Vec<ParentProxy>, connect_timeout: Duration, backoff: Duration) -> Self {
        let n = parents.len();
        ParentSet {
            parents,
            down_until: Mutex::new(vec![None; n]),
            connect_timeout,
            backoff,
        }
    }

    /// Whether there is no parent at all.
    pub fn is_empty(&self) -> bool {
        self.parents.is_empty()
    }

    /// The parent at `index`.
    pub fn get(&self, index: usize) -> Option<&ParentProxy> {
        self.parents.get(index)
    }

    /// The order to try parents in now: live ones in configuration order, then (only when
    /// every parent is backed off) all of them, so one lucky probe can bring one back.
    pub fn candidates(&self) -> Vec<usize> {
        let now = Instant::now();
        let down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        let alive: Vec<usize> = (0..self.parents.len())
            .filter(|&i| down[i].is_none_or(|until| until <= now))
            .collect();
        if alive.is_empty() {
            (0..self.parents.len()).collect()
        } else {
            alive
        }
    }

    /// Marks a parent as failed: it is skipped for the back-off period.
    pub fn mark_down(&self, index: usize) {
        let mut down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = down.get_mut(index) {
            if slot.is_none() {
                tracing::warn!(parent = %self.parents[index], backoff_s = self.backoff.as_secs(), "parent proxy marked down");
            }
            *slot = Some(Instant::now() + self.backoff);
        }
    }

    /// Marks a parent as working again.
    pub fn mark_up(&self, index: usize) {
        let mut down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = down.get_mut(index)
            && slot.take().is_some()
        {
            tracing::info!(parent = %self.parents[index], "parent proxy is back");
        }
    }

    /// Connects to the first parent that answers, skipping `exclude`; returns its index.
    pub async fn connect(&self, exclude: &[usize]) -> Result<(usize, TcpStream), UpstreamError> {
        let mut tried = Vec::new();
        for index in self.candidates() {
            if exclude.contains(&index) {
                continue;
            }
            let parent = &self.parents[index];
            let attempt = tokio::time::timeout(
                self.connect_timeout,
                TcpStream::connect((parent.host.as_str(), parent.port)),
            )
            .await;
            match attempt {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    self.mark_up(index);
                    return Ok((index, stream));
                }
                Ok(Err(e)) => tried.push(format!("{parent}: {e}")),
                Err(_) => tried.push(format!(
                    "{parent}: no answer in {} s",
                    self.connect_timeout.as_secs()
                )),
            }
            self.mark_down(index);
        }
        Err(UpstreamError::AllParentsDown {
            tried: if tried.is_empty() {
                "none".to_string()
            } else {
                tried.join("; ")
            },
        })
    }
}
