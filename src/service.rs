//! Running the proxy as a service: everything between a resolved `Config` and `cntlm::run`
//! (probing the listen addresses, daemonizing, `-U`, `-P`, where logs go, the runtime, the
//! signals, and acting on SIGHUP with `crate::reload`).
//!
//! This module belongs to the binary (declared in `main.rs`), not to the library: it reads
//! the environment (`CNTLM_LOG`, `CNTLM_SYSLOG_SOCKET`).
//!
//! Order of operations (CNTLM's, with the daemon module's contract, `cntlm::daemon`):
//! 1. while stderr is still the terminal: bind every listen address, check `-U` and `-P`,
//!    open syslog; a failure here exits 1 with the message on the terminal;
//! 2. without `-f`/`-v`/`-T`: fork into the background, before any thread exists;
//! 3. `-U`: drop root; 4. `-P`: write the pid file;
//! 5. build the runtime, install the signal handlers, run until stopped;
//! 6. remove the pid file, exit.
//!
//! `-U` and privileged ports: as CNTLM, every listener (proxy, tunnels, SOCKS5) is bound in
//! step 1, as root, and handed to the proxy, so ports below 1024 work with `-U`. A listener a
//! SIGHUP adds later is bound by the unprivileged process (a low port then fails, logged).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cntlm::cli::Args;
use cntlm::config::Config;
use cntlm::config::report::Report;
use cntlm::proxy::{PreBound, Proxy};
use cntlm::shutdown::{ShutdownCoordinator, ShutdownPhase, ShutdownSignal};

use crate::reload::{ConfigSource, ReloadError, ReloadSource, reload_config};

/// Overrides the syslog socket (`/dev/log`). For tests only, so they can capture what the
/// daemon logs; not part of the documented interface.
#[cfg(unix)]
const SYSLOG_SOCKET_VAR: &str = "CNTLM_SYSLOG_SOCKET";
/// How long the runtime waits for blocking tasks when the process exits; worker tasks
/// (sessions, tunnels) are dropped at once, so a stuck peer never holds the exit.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// Whether the process detaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// `-f`, `-v` (which implies it) or `-T`: stay attached, log to stderr or the trace.
    Foreground,
    /// The default, as CNTLM: fork into the background and log to syslog.
    Daemon,
}

impl RunMode {
    /// `-f`, `-v` and `-T` keep the foreground (a trace is for reproducing a problem at the
    /// terminal, and its file then gets every line).
    pub fn of(args: &Args) -> RunMode {
        if args.foreground || args.verbose || args.trace.is_some() {
            RunMode::Foreground
        } else {
            RunMode::Daemon
        }
    }
}

/// Binds every address the proxy will listen on (proxy, tunnels, SOCKS5), so "address in
/// use" or "permission denied" reaches the terminal and the exit status before the process
/// detaches, and so the ports are ours before `-U` drops root. The sockets survive the fork.
pub fn bind_listeners(config: &Config) -> anyhow::Result<PreBound> {
    Ok(PreBound::bind(config)?)
}

/// Where log lines go.
enum LogTarget {
    /// The terminal (foreground).
    Stderr,
    /// `-T FILE`, truncated as CNTLM does.
    Trace(PathBuf),
    /// The syslog daemon (background).
    #[cfg(unix)]
    Syslog(cntlm::daemon::Syslog),
    /// Background without a reachable syslog: nowhere (a warning said so on the terminal).
    #[cfg(unix)]
    Discard,
}

/// Logs at info (`-v`/`-T`: debug); `CNTLM_LOG` (a tracing filter) overrides the level.
fn init_logging(args: &Args, target: LogTarget) -> anyhow::Result<()> {
    use std::io::Write;
    use tracing_subscriber::EnvFilter;
    let level = if args.verbose || args.trace.is_some() {
        "debug"
    } else {
        "info"
    };
    let filter = || EnvFilter::try_from_env("CNTLM_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    match target {
        LogTarget::Trace(path) => {
            println!("Redirecting all output to {}", path.display());
            let mut file = std::fs::File::create(&path)
                .with_context(|| format!("cannot create trace file {}", path.display()))?;
            writeln!(
                file,
                "cntlm debug trace, version {}.",
                env!("CARGO_PKG_VERSION")
            )?;
            tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        LogTarget::Stderr => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
        #[cfg(unix)]
        LogTarget::Syslog(syslog) => {
            use tracing_subscriber::layer::SubscriberExt;
            use tracing_subscriber::util::SubscriberInitExt;
            tracing_subscriber::registry()
                .with(filter())
                .with(syslog.layer())
                .init();
        }
        #[cfg(unix)]
        LogTarget::Discard => {}
    }
    Ok(())
}

/// Connects to syslog (`/dev/log`, or the test socket). Unreachable is not fatal, as in
/// CNTLM (syslog(3) drops messages silently); we at least say so while stderr is a terminal.
#[cfg(unix)]
fn open_syslog() -> LogTarget {
    let path = std::env::var_os(SYSLOG_SOCKET_VAR)
        .map_or_else(|| PathBuf::from("/dev/log"), PathBuf::from);
    match cntlm::daemon::Syslog::open(&path, "cntlm") {
        Ok(syslog) => LogTarget::Syslog(syslog),
        Err(err) => {
            eprintln!(
                "cntlm: warning: cannot reach syslog at {}: {err}; running without a log \
                 (use -f to log to stderr)",
                path.display()
            );
            LogTarget::Discard
        }
    }
}

/// The `-P` path, absolute (the daemon changes to `/`), refused now if it is a symbolic link
/// or not a regular file, so that mistake reaches the terminal; [`PidFile::create`] checks
/// again when it writes.
///
/// [`PidFile::create`]: cntlm::daemon::PidFile::create
#[cfg(unix)]
fn check_pid_path(path: &std::path::Path) -> anyhow::Result<PathBuf> {
    use cntlm::daemon::DaemonError;
    let path = std::path::absolute(path)
        .with_context(|| format!("pid file {}: cannot make the path absolute", path.display()))?;
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        if meta.file_type().is_symlink() {
            return Err(DaemonError::PidFileSymlink { path }.into());
        }
        if !meta.is_file() {
            return Err(DaemonError::PidFileNotRegular { path }.into());
        }
    }
    Ok(path)
}

/// Runs the proxy as a service on a checked `config` and returns the exit code.
///
/// `report` holds the start-up warnings, logged once logging is set up; `reload` is what a
/// SIGHUP re-reads.
pub fn run(
    args: &Args,
    config: Config,
    report: &Report,
    reload: ReloadSource,
) -> anyhow::Result<ExitCode> {
    let mode = RunMode::of(args);
    // 1. Whatever can fail visibly, while stderr is still the terminal.
    let bound = bind_listeners(&config)?;
    #[cfg(unix)]
    let pid_path = args.pid_file.as_deref().map(check_pid_path).transpose()?;
    #[cfg(unix)]
    if let Some(spec) = &args.run_as {
        cntlm::daemon::UserSpec::parse(spec)?.resolve()?;
    }
    let target = match (&args.trace, mode) {
        (Some(path), _) => LogTarget::Trace(path.clone()),
        (None, RunMode::Foreground) => LogTarget::Stderr,
        #[cfg(unix)]
        (None, RunMode::Daemon) => open_syslog(),
        #[cfg(not(unix))]
        (None, RunMode::Daemon) => LogTarget::Stderr,
    };
    init_logging(args, target)?;

    // 2. Detach. From here on errors go to the log: stderr is /dev/null in the background.
    #[cfg(unix)]
    if mode == RunMode::Daemon {
        cntlm::daemon::daemonize()?;
    }
    #[cfg(not(unix))]
    if mode == RunMode::Daemon {
        tracing::info!("background (daemon) mode exists on Unix only: staying in the foreground");
    }
    log_startup(args, &config, report, &reload.config);

    // 3. -U, then 4. -P (after the fork, so it names the daemon; after the drop, so the
    // unprivileged process can remove it again).
    #[cfg(unix)]
    let pid_file = match become_service(args.run_as.as_deref(), pid_path.as_deref()) {
        Ok(pid_file) => pid_file,
        Err(err) => {
            tracing::error!("{err:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    #[cfg(not(unix))]
    for (flag, given) in [
        ("-P", args.pid_file.is_some()),
        ("-U", args.run_as.is_some()),
    ] {
        if given {
            tracing::warn!("{flag} exists on Unix only; ignored");
        }
    }

    // 5. Run until stopped.
    let code = match run_until_stopped(Arc::new(config), bound, reload) {
        Ok(code) => code,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    };
    // 6. The pid file goes before the last line, so whoever reads that line finds it gone.
    #[cfg(unix)]
    drop(pid_file);
    tracing::info!("cntlm stopped");
    Ok(code)
}

/// `-U` then `-P`; the pid file is removed when the returned guard drops.
#[cfg(unix)]
fn become_service(
    run_as: Option<&str>,
    pid_path: Option<&std::path::Path>,
) -> anyhow::Result<Option<cntlm::daemon::PidFile>> {
    if let Some(spec) = run_as {
        cntlm::daemon::drop_privileges(spec)?;
    }
    let pid_file = pid_path.map(cntlm::daemon::PidFile::create).transpose()?;
    if let Some(pid_file) = &pid_file {
        tracing::info!("pid file {} written", pid_file.path().display());
    }
    Ok(pid_file)
}

/// The start-up lines, in the log the process ends up with.
fn log_startup(args: &Args, config: &Config, report: &Report, source: &ConfigSource) {
    tracing::info!(
        "cntlm {} using {}",
        env!("CARGO_PKG_VERSION"),
        source.describe()
    );
    for warning in &report.warnings {
        tracing::warn!("{warning}");
    }
    if args.password.is_some() {
        tracing::warn!(
            "the password given with -p is visible to other local users (ps, /proc); \
             prefer -I or a config file only you can read"
        );
    }
    tracing::debug!(
        listen = ?config.listen,
        tunnels = config.tunnels.len(),
        socks5 = ?config.socks5_listen,
        "listeners to open"
    );
    // "No parent: DIRECT" is the proxy's to say, with the addresses it actually bound.
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    /// `run` returned: every listener closed and the sessions finished.
    Finished,
    /// A second SIGTERM/SIGINT: whatever was still open is dropped.
    Immediately,
    /// The drain deadline passed with connections still open; they are dropped.
    DrainDeadline,
}

/// Builds the runtime, runs the proxy until a stop request, and leaves without waiting for
/// stuck tasks.
fn run_until_stopped(
    config: Arc<Config>,
    bound: PreBound,
    reload: ReloadSource,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(supervise(config, bound, reload));
    runtime.shutdown_timeout(EXIT_GRACE);
    match outcome? {
        Stopped::Finished => {}
        Stopped::Immediately => tracing::info!("exiting at once: open connections dropped"),
        Stopped::DrainDeadline => {
            tracing::warn!("drain deadline passed: connections still open were dropped")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Installs the signal handlers, then races `cntlm::run` (which stops accepting at the
/// first SIGTERM/SIGINT) against a second signal and the drain deadline.
async fn supervise(
    config: Arc<Config>,
    bound: PreBound,
    reload: ReloadSource,
) -> anyhow::Result<Stopped> {
    let coordinator = ShutdownCoordinator::new(config.limits.shutdown_drain);
    let signal = coordinator.subscribe();
    coordinator
        .spawn_os_signals()
        .context("cannot install the signal handlers")?;
    let proxy = Proxy::from_prebound(config.clone(), bound)?;
    let (configs_tx, configs) = tokio::sync::watch::channel(config);
    tokio::spawn(watch_reloads(signal.clone(), Arc::new(reload), configs_tx));
    // Tests wait for this line: from here on SIGTERM is handled, not fatal.
    tracing::info!(
        "pid {}: SIGTERM or SIGINT stops, SIGHUP re-reads the configuration",
        std::process::id()
    );

    let mut stopping = signal.clone();
    let mut immediate = signal.clone();
    let mut drain = signal;
    let run = proxy.serve_reloadable(configs, async move { stopping.stopping().await });
    tokio::select! {
        biased;
        result = run => {
            result?;
            Ok(Stopped::Finished)
        }
        () = immediate.immediate() => Ok(Stopped::Immediately),
        // A second signal also ends the drain: when it lands between the polls of the two
        // branches above (another worker thread handles signals), this branch sees it first.
        () = drain.drain_expired() => Ok(if drain.phase() == ShutdownPhase::Immediate {
            Stopped::Immediately
        } else {
            Stopped::DrainDeadline
        }),
    }
}

/// On each SIGHUP: re-read and validate the configuration; a valid one goes to the proxy
/// (which applies it to new connections), an invalid one is logged and the running one kept.
async fn watch_reloads(
    mut signal: ShutdownSignal,
    source: Arc<ReloadSource>,
    configs: tokio::sync::watch::Sender<Arc<Config>>,
) {
    while signal.reload_requested().await {
        let source = source.clone();
        // File I/O and parsing: off the async workers.
        let result = tokio::task::spawn_blocking(move || reload_config(&source)).await;
        match result {
            Ok(Ok(config)) => {
                tracing::info!("configuration valid: applying it");
                if configs.send(Arc::new(config)).is_err() {
                    return; // the proxy has stopped
                }
            }
            Ok(Err(err)) => log_rejected_reload(&err),
            Err(err) => tracing::error!("configuration re-read failed: {err}"),
        }
    }
}

fn log_rejected_reload(err: &ReloadError) {
    match err {
        ReloadError::Read { source, .. } => tracing::error!("reload: {err}: {source}"),
        ReloadError::Invalid { errors } => {
            for error in errors {
                tracing::error!("reload: {error}");
            }
        }
    }
    tracing::error!("reload rejected ({err}); keeping the running configuration");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(argv: &[&str]) -> Args {
        Args::parse_from_argv(std::iter::once("cntlm").chain(argv.iter().copied()))
            .expect("valid command line")
    }

    #[test]
    fn f_v_and_t_keep_the_foreground_and_nothing_else_does() {
        assert_eq!(RunMode::of(&args(&[])), RunMode::Daemon);
        assert_eq!(RunMode::of(&args(&["-P", "x.pid"])), RunMode::Daemon);
        for flags in [&["-f"][..], &["-v"], &["-T", "trace.log"]] {
            assert_eq!(RunMode::of(&args(flags)), RunMode::Foreground, "{flags:?}");
        }
    }

    #[test]
    fn a_listener_in_use_is_reported_with_its_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let config = Config {
            listen: vec![addr],
            ..Config::default()
        };
        let err = bind_listeners(&config).expect_err("in use");
        assert_eq!(err.to_string(), format!("cannot listen on {addr}"));
        drop(taken);
        bind_listeners(&config).expect("free again");
    }
}
