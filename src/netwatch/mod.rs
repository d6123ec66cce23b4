//! Network-change detection for roaming (issue 6 §2): the laptop moves between office, VPN
//! and home, and everything learnt about the old network (the PAC file, its per-host answers,
//! which parents are dead) must be thrown away.
//!
//! [`NetworkWatcher::spawn`] starts one task that owns a source of change hints and publishes
//! a [`NetworkGeneration`], a counter bumped once per real change:
//! - Linux: an rtnetlink socket (`linux.rs`) that wakes on any address, route or link event;
//! - elsewhere, or when netlink cannot be opened: a poll every [`WatchOptions::poll_interval`].
//!
//! A hint starts a debounce: the task waits until no hint has come for
//! [`WatchOptions::debounce`] (at most [`WatchOptions::max_hold`] in all), because joining a
//! network is a burst (link up, addresses, routes, DHCPv6, router advertisements) and should
//! count once. It then takes a [`NetworkSnapshot`]; only when that differs from the last one is
//! the generation bumped and the difference logged (`network changed: added 10.1.2.3 on wlan0;
//! default route via 10.1.2.1 on wlan0 added`). Hints that change nothing we look at, such as
//! IPv6 lifetime refreshes, are dropped there.
//!
//! Consumers hold a [`tokio::sync::watch::Receiver`] from [`NetworkWatcher::subscribe`] and
//! react on `changed()`: re-fetch the PAC (`pac::fetch::PacLoader::refresh`), clear its cache
//! (`PacEngine::clear_cache`) and the dead-parent marks.

#[cfg(target_os = "linux")]
mod linux;
mod snapshot;

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior};

pub use snapshot::{DefaultRoute, InterfaceAddress, NetworkSnapshot, SnapshotDiff};

/// How many network changes have been seen since the watcher started (0 at start).
///
/// Compare two values to learn whether the network changed in between; the number itself
/// means nothing else.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetworkGeneration(u64);

impl NetworkGeneration {
    /// The counter's value.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The generation after this one.
    fn next(self) -> NetworkGeneration {
        NetworkGeneration(self.0.wrapping_add(1))
    }
}

impl fmt::Display for NetworkGeneration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "network generation {}", self.0)
    }
}

/// Where change hints come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// Kernel events (Linux rtnetlink).
    Netlink,
    /// A timer: a snapshot every [`WatchOptions::poll_interval`].
    Poll,
}

/// Which source [`NetworkWatcher::spawn_with`] should try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourcePreference {
    /// Kernel events where the platform has them, else polling.
    KernelEvents,
    /// Polling only (tests of the fallback; platforms without a usable event source).
    Poll,
}

/// Timing and source choices. [`Default`] is what `spawn` uses.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// Which source to use.
    pub source: SourcePreference,
    /// Quiet time after the last hint before a snapshot is taken (default 500 ms).
    pub debounce: Duration,
    /// Longest a stream of hints can delay the snapshot (default 5 s), so a flapping link is
    /// still noticed.
    pub max_hold: Duration,
    /// Time between snapshots when polling (default 5 s).
    pub poll_interval: Duration,
}

impl Default for WatchOptions {
    fn default() -> WatchOptions {
        WatchOptions {
            source: SourcePreference::KernelEvents,
            debounce: Duration::from_millis(500),
            max_hold: Duration::from_secs(5),
            poll_interval: Duration::from_secs(5),
        }
    }
}

/// The running watcher. Dropping it stops the task; subscribers then see `changed()` fail.
#[derive(Debug)]
pub struct NetworkWatcher {
    /// The generation channel; subscribers are cloned from it.
    generation: watch::Receiver<NetworkGeneration>,
    /// The snapshot that went with the latest generation (updated before the generation).
    snapshot: watch::Receiver<Arc<NetworkSnapshot>>,
    /// Which source the task runs on now (netlink can fail over to the poll).
    mode: watch::Receiver<WatchMode>,
    /// The task, aborted on drop.
    task: JoinHandle<()>,
}

impl NetworkWatcher {
    /// Starts watching with the default options: netlink on Linux, falling back to a 5 s poll
    /// (with a log line) when the socket cannot be opened. Must be called inside a tokio
    /// runtime. Fails only when the first snapshot cannot be taken.
    pub fn spawn() -> io::Result<NetworkWatcher> {
        NetworkWatcher::spawn_with(WatchOptions::default())
    }

    /// Starts watching with `options`.
    pub fn spawn_with(options: WatchOptions) -> io::Result<NetworkWatcher> {
        NetworkWatcher::start(
            HintSource::open(&options),
            NetworkSnapshot::capture,
            options,
        )
    }

    /// A receiver of the generation; `changed()` resolves once per debounced network change.
    pub fn subscribe(&self) -> watch::Receiver<NetworkGeneration> {
        self.generation.clone()
    }

    /// The current generation.
    pub fn generation(&self) -> NetworkGeneration {
        *self.generation.borrow()
    }

    /// The snapshot taken at the latest change (or at start).
    pub fn snapshot(&self) -> Arc<NetworkSnapshot> {
        Arc::clone(&self.snapshot.borrow())
    }

    /// Which source the watcher runs on now: a netlink socket that fails is replaced by the
    /// poll (with a log line), and this then says [`WatchMode::Poll`].
    pub fn mode(&self) -> WatchMode {
        *self.mode.borrow()
    }

    /// Takes the first snapshot and spawns the loop; shared by `spawn_with` and the tests,
    /// which script both the hints and the snapshots.
    fn start<C>(
        source: HintSource,
        mut capture: C,
        options: WatchOptions,
    ) -> io::Result<NetworkWatcher>
    where
        C: FnMut() -> io::Result<NetworkSnapshot> + Send + 'static,
    {
        let first = Arc::new(capture()?);
        let (generation_tx, generation) = watch::channel(NetworkGeneration::default());
        let (snapshot_tx, snapshot) = watch::channel(first);
        let (mode_tx, mode) = watch::channel(source.mode());
        let publisher = Publisher {
            generation: generation_tx,
            snapshot: snapshot_tx,
            mode: mode_tx,
        };
        let task = tokio::spawn(watch_loop(source, capture, publisher, options));
        Ok(NetworkWatcher {
            generation,
            snapshot,
            mode,
            task,
        })
    }
}

impl Drop for NetworkWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The sending halves, owned by the task.
struct Publisher {
    /// Bumped on each real change.
    generation: watch::Sender<NetworkGeneration>,
    /// Replaced before the bump, so a woken subscriber reads the matching snapshot.
    snapshot: watch::Sender<Arc<NetworkSnapshot>>,
    /// The source in use, for [`NetworkWatcher::mode`].
    mode: watch::Sender<WatchMode>,
}

impl Publisher {
    /// Compares `newer` with the last snapshot; on a difference, logs it, stores `newer` and
    /// bumps the generation. Returns the diff.
    fn offer(&self, newer: NetworkSnapshot) -> SnapshotDiff {
        let diff = self.snapshot.borrow().diff(&newer);
        if !diff.is_empty() {
            tracing::info!("network changed: {diff}");
            self.snapshot.send_replace(Arc::new(newer));
            self.generation.send_modify(|g| *g = g.next());
        }
        diff
    }
}

/// A stream of "something may have changed" hints.
enum HintSource {
    /// Kernel events.
    #[cfg(target_os = "linux")]
    Netlink(linux::NetlinkEvents),
    /// A timer.
    Poll(Interval),
    /// Hints sent by a test.
    #[cfg(test)]
    Injected(tokio::sync::mpsc::UnboundedReceiver<()>),
}

impl HintSource {
    /// The preferred source, or the poll with a log line when it cannot be had.
    fn open(options: &WatchOptions) -> HintSource {
        #[cfg(target_os = "linux")]
        if options.source == SourcePreference::KernelEvents {
            match linux::NetlinkEvents::open() {
                Ok(events) => return HintSource::Netlink(events),
                Err(e) => tracing::warn!(
                    "cannot open an rtnetlink socket ({e}); polling the network every {:?}",
                    options.poll_interval
                ),
            }
        }
        HintSource::poll(options.poll_interval)
    }

    /// A poll whose first hint comes one interval from now (the start snapshot is the first
    /// look).
    fn poll(every: Duration) -> HintSource {
        let mut interval = tokio::time::interval_at(Instant::now() + every, every);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        HintSource::Poll(interval)
    }

    /// Which mode this is, for [`NetworkWatcher::mode`].
    fn mode(&self) -> WatchMode {
        match self {
            #[cfg(target_os = "linux")]
            HintSource::Netlink(_) => WatchMode::Netlink,
            HintSource::Poll(_) => WatchMode::Poll,
            #[cfg(test)]
            HintSource::Injected(_) => WatchMode::Netlink,
        }
    }

    /// The next hint. An error means this source is broken for good.
    async fn next(&mut self) -> io::Result<()> {
        match self {
            #[cfg(target_os = "linux")]
            HintSource::Netlink(events) => events.next().await,
            HintSource::Poll(interval) => {
                interval.tick().await;
                Ok(())
            }
            #[cfg(test)]
            HintSource::Injected(rx) => match rx.recv().await {
                Some(()) => Ok(()),
                None => std::future::pending().await,
            },
        }
    }
}

/// The task: wait for a hint, let the burst settle, compare snapshots, publish.
async fn watch_loop<C>(
    mut source: HintSource,
    mut capture: C,
    publisher: Publisher,
    options: WatchOptions,
) where
    C: FnMut() -> io::Result<NetworkSnapshot>,
{
    loop {
        if let Err(e) = source.next().await {
            source = fall_back(e, &options, &publisher);
            continue;
        }
        // A poll is its own debounce: its ticks are not a burst, and with an interval shorter
        // than the debounce, settling would wait out `max_hold` every time.
        if source.mode() == WatchMode::Netlink
            && let Err(e) = settle(&mut source, &options).await
        {
            source = fall_back(e, &options, &publisher);
        }
        // getifaddrs and two small /proc files: microseconds, fine on the runtime thread.
        match capture() {
            Ok(snapshot) => {
                publisher.offer(snapshot);
            }
            Err(e) => tracing::warn!("cannot read the network state ({e}); will look again"),
        }
    }
}

/// Waits until no hint has come for `options.debounce`, or `options.max_hold` has passed.
async fn settle(source: &mut HintSource, options: &WatchOptions) -> io::Result<()> {
    let hold_until = Instant::now() + options.max_hold;
    loop {
        let quiet_until = (Instant::now() + options.debounce).min(hold_until);
        tokio::select! {
            hint = source.next() => hint?,
            () = tokio::time::sleep_until(quiet_until) => return Ok(()),
        }
    }
}

/// Replaces a broken event source with the poll, saying so once.
fn fall_back(error: io::Error, options: &WatchOptions, publisher: &Publisher) -> HintSource {
    tracing::warn!(
        "network event source failed ({error}); polling the network every {:?}",
        options.poll_interval
    );
    publisher.mode.send_replace(WatchMode::Poll);
    HintSource::poll(options.poll_interval)
}

#[cfg(test)]
mod tests;
