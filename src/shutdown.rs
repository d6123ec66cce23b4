//! Signals turned into a shutdown and reload protocol the listeners and sessions can await.
//!
//! SIGTERM or SIGINT: stop accepting at once and start a drain deadline (`Limits::shutdown_drain`,
//! 30 s by default) during which in-flight requests and tunnels may finish; a second one means
//! exit now, even with stuck peers (CNTLM 0.92.3 waits forever). SIGHUP asks for a reload
//! (CNTLM quits on it). SIGPIPE needs nothing: the Rust runtime ignores it before `main`, so a
//! write to a closed socket is an `EPIPE` error, not a dead process.
//!
//! The state machine ([`ShutdownCoordinator::handle`]) is separate from the OS signals
//! ([`ShutdownCoordinator::spawn_os_signals`]), so tests inject events directly. State is
//! published through `tokio::sync::watch`, so a waiter that subscribes late still sees it.
//!
//! Wiring in `main` (sketch): the coordinator is spawned on the runtime, `run` gets
//! `signal.stopping()` as its shutdown future and awaits `drain_expired()` for its tunnels,
//! and `main` races `run` against `signal.immediate()`, then leaves with
//! `Runtime::shutdown_timeout` so no stuck task can hold the exit.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// An event that drives the coordinator (a signal, or a test's stand-in for one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalEvent {
    /// SIGTERM or SIGINT (Ctrl-C on Windows).
    Terminate,
    /// SIGHUP: re-read the configuration.
    Reload,
}

/// Where the process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownPhase {
    /// Serving normally.
    Running,
    /// Not accepting any more; existing work may finish until `deadline`.
    Draining {
        /// When whatever is still open gets cut.
        deadline: Instant,
    },
    /// A second stop request (or a lost coordinator): exit without waiting for anything.
    Immediate,
}

/// Owns the shutdown state; there is one per process.
#[derive(Debug)]
pub struct ShutdownCoordinator {
    /// The current phase, watched by every [`ShutdownSignal`].
    phase: watch::Sender<ShutdownPhase>,
    /// How many reloads were requested so far; waiters wake on each increment.
    reloads: watch::Sender<u64>,
    /// How long draining lasts before open connections are cut.
    drain: Duration,
}

impl ShutdownCoordinator {
    /// A coordinator in the `Running` phase whose drain lasts `drain`.
    pub fn new(drain: Duration) -> Self {
        ShutdownCoordinator {
            phase: watch::Sender::new(ShutdownPhase::Running),
            reloads: watch::Sender::new(0),
            drain,
        }
    }

    /// A handle to await shutdown and reload requests; clone it freely.
    pub fn subscribe(&self) -> ShutdownSignal {
        ShutdownSignal {
            phase: self.phase.subscribe(),
            reloads: self.reloads.subscribe(),
        }
    }

    /// The current phase.
    pub fn phase(&self) -> ShutdownPhase {
        *self.phase.borrow()
    }

    /// Applies one event and returns the phase after it.
    ///
    /// A reload while draining is ignored: the process is on its way out.
    pub fn handle(&self, event: SignalEvent) -> ShutdownPhase {
        let current = self.phase();
        let next = match (event, current) {
            (SignalEvent::Terminate, ShutdownPhase::Running) => {
                tracing::info!(
                    drain_secs = self.drain.as_secs(),
                    "stop requested: no longer accepting, draining open connections"
                );
                ShutdownPhase::Draining {
                    deadline: Instant::now() + self.drain,
                }
            }
            (SignalEvent::Terminate, _) => {
                if current != ShutdownPhase::Immediate {
                    tracing::warn!("second stop request: exiting now");
                }
                ShutdownPhase::Immediate
            }
            (SignalEvent::Reload, ShutdownPhase::Running) => {
                tracing::info!("reload requested");
                self.reloads.send_modify(|count| *count += 1);
                ShutdownPhase::Running
            }
            (SignalEvent::Reload, phase) => {
                tracing::info!("reload ignored: shutting down");
                phase
            }
        };
        if next != current {
            self.phase.send_replace(next);
        }
        next
    }

    /// Installs the OS signal handlers now (so a signal that arrives after this returns is
    /// never lost), then feeds them to [`handle`](Self::handle) on a task until the phase
    /// is `Immediate`. Must be called inside a tokio runtime.
    #[cfg(unix)]
    pub fn spawn_os_signals(self) -> std::io::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut hangup = signal(SignalKind::hangup())?;
        Ok(tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = terminate.recv() => SignalEvent::Terminate,
                    _ = interrupt.recv() => SignalEvent::Terminate,
                    _ = hangup.recv() => SignalEvent::Reload,
                };
                if self.handle(event) == ShutdownPhase::Immediate {
                    break;
                }
            }
        }))
    }

    /// Windows has no SIGHUP: Ctrl-C (and console close) stop the process; reload is not
    /// reachable from a signal there.
    #[cfg(not(unix))]
    pub fn spawn_os_signals(self) -> std::io::Result<tokio::task::JoinHandle<()>> {
        Ok(tokio::spawn(async move {
            loop {
                if tokio::signal::ctrl_c().await.is_err() {
                    break;
                }
                if self.handle(SignalEvent::Terminate) == ShutdownPhase::Immediate {
                    break;
                }
            }
        }))
    }
}

/// What listeners and sessions hold to learn about shutdown and reload.
///
/// If the coordinator is dropped, every wait resolves as if `Immediate` had been reached:
/// nothing could ever stop the process otherwise.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    /// The coordinator's phase.
    phase: watch::Receiver<ShutdownPhase>,
    /// The coordinator's reload counter.
    reloads: watch::Receiver<u64>,
}

impl ShutdownSignal {
    /// The current phase (`Immediate` once the coordinator is gone).
    pub fn phase(&self) -> ShutdownPhase {
        if self.phase.has_changed().is_err() {
            return ShutdownPhase::Immediate;
        }
        *self.phase.borrow()
    }

    /// Whether new connections must be refused.
    pub fn is_stopping(&self) -> bool {
        self.phase() != ShutdownPhase::Running
    }

    /// Resolves once the process stops accepting (first SIGTERM/SIGINT). Listeners await this.
    pub async fn stopping(&mut self) {
        let _ = self
            .phase
            .wait_for(|phase| *phase != ShutdownPhase::Running)
            .await;
    }

    /// Resolves when open connections must be cut: the drain deadline has passed, or a
    /// second stop request came. Tunnels and sessions in flight await this.
    pub async fn drain_expired(&mut self) {
        loop {
            let phase = match self.phase.wait_for(|p| *p != ShutdownPhase::Running).await {
                Ok(phase) => *phase,
                Err(_) => return,
            };
            match phase {
                ShutdownPhase::Draining { deadline } => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => return,
                        changed = self.phase.changed() => {
                            if changed.is_err() {
                                return;
                            }
                        }
                    }
                }
                ShutdownPhase::Running | ShutdownPhase::Immediate => return,
            }
        }
    }

    /// Resolves on the second stop request: `main` exits without waiting for anything.
    pub async fn immediate(&mut self) {
        let _ = self
            .phase
            .wait_for(|phase| *phase == ShutdownPhase::Immediate)
            .await;
    }

    /// Resolves at the next reload request after the last one this handle saw. Returns
    /// `false` when no reload can come any more (the coordinator is gone).
    pub async fn reload_requested(&mut self) -> bool {
        let requested = self.reloads.changed().await.is_ok();
        self.reloads.borrow_and_update();
        requested
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRAIN: Duration = Duration::from_secs(30);
    const LIMIT: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn first_terminate_stops_accepting_and_drains_until_the_deadline() {
        let coordinator = ShutdownCoordinator::new(DRAIN);
        let mut signal = coordinator.subscribe();
        assert!(!signal.is_stopping());
        let start = Instant::now();

        let phase = coordinator.handle(SignalEvent::Terminate);
        assert_eq!(
            phase,
            ShutdownPhase::Draining {
                deadline: start + DRAIN
            }
        );
        assert!(signal.is_stopping());
        signal.stopping().await;

        // With the clock paused, the drain wait only ends when time reaches the deadline.
        signal.drain_expired().await;
        assert!(Instant::now() >= start + DRAIN);
        assert_eq!(
            coordinator.phase(),
            ShutdownPhase::Draining {
                deadline: start + DRAIN
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn second_terminate_cuts_the_drain_short() {
        let coordinator = ShutdownCoordinator::new(DRAIN);
        let mut drainer = coordinator.subscribe();
        let mut main = coordinator.subscribe();
        let start = Instant::now();
        coordinator.handle(SignalEvent::Terminate);

        let waiting = tokio::spawn(async move {
            drainer.drain_expired().await;
            Instant::now()
        });
        tokio::task::yield_now().await;
        assert_eq!(
            coordinator.handle(SignalEvent::Terminate),
            ShutdownPhase::Immediate
        );
        let cut_at = waiting.await.expect("drain waiter");
        assert!(cut_at < start + DRAIN, "drain ran to its deadline");
        tokio::time::timeout(LIMIT, main.immediate())
            .await
            .expect("immediate seen");
        assert_eq!(
            coordinator.handle(SignalEvent::Terminate),
            ShutdownPhase::Immediate
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reload_wakes_each_waiter_once_per_request() {
        let coordinator = ShutdownCoordinator::new(DRAIN);
        let mut signal = coordinator.subscribe();
        assert_eq!(
            coordinator.handle(SignalEvent::Reload),
            ShutdownPhase::Running
        );
        let woke = tokio::time::timeout(LIMIT, signal.reload_requested()).await;
        assert_eq!(woke, Ok(true));
        // Already seen: a second wait must not resolve until another reload.
        let again = tokio::time::timeout(Duration::from_millis(50), signal.reload_requested());
        assert!(again.await.is_err(), "one reload woke the waiter twice");
        coordinator.handle(SignalEvent::Reload);
        assert_eq!(
            tokio::time::timeout(LIMIT, signal.reload_requested()).await,
            Ok(true)
        );
    }

    #[tokio::test]
    async fn reload_while_draining_is_ignored() {
        let coordinator = ShutdownCoordinator::new(DRAIN);
        let mut signal = coordinator.subscribe();
        let phase = coordinator.handle(SignalEvent::Terminate);
        assert_eq!(coordinator.handle(SignalEvent::Reload), phase);
        drop(coordinator);
        assert!(
            !signal.reload_requested().await,
            "a reload was delivered while draining"
        );
    }

    #[tokio::test]
    async fn a_dropped_coordinator_releases_every_waiter() {
        let coordinator = ShutdownCoordinator::new(DRAIN);
        let mut signal = coordinator.subscribe();
        drop(coordinator);
        assert_eq!(signal.phase(), ShutdownPhase::Immediate);
        tokio::time::timeout(LIMIT, async {
            signal.stopping().await;
            signal.drain_expired().await;
            signal.immediate().await;
        })
        .await
        .expect("waits resolve without a coordinator");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_real_sighup_requests_a_reload() {
        let coordinator = ShutdownCoordinator::new(DRAIN);
        let mut signal = coordinator.subscribe();
        let task = coordinator.spawn_os_signals().expect("handlers installed");
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).expect("raise SIGHUP");
        let woke = tokio::time::timeout(LIMIT, signal.reload_requested()).await;
        assert_eq!(woke, Ok(true));
        assert_eq!(signal.phase(), ShutdownPhase::Running);
        task.abort();
    }
}
