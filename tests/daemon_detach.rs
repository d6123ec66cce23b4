//! A real daemonization, end to end: detach, drop privileges (when run as root), write the
//! pid file, log to syslog, remove the pid file on exit.
//!
//! `harness = false` (see Cargo.toml): libtest runs every test on a spawned thread, and
//! `daemonize` rightly refuses to fork a multi-threaded process, so this file has its own
//! single-threaded `main`. It re-executes itself as the would-be daemon (the `PROBE_DIR`
//! variable says which role) and talks to it over a Unix socket in a temporary directory;
//! every wait has a deadline and the daemon is killed by pid if anything goes wrong.

#[cfg(unix)]
fn main() {
    match std::env::var_os(PROBE_DIR) {
        Some(dir) => daemon_side(std::path::PathBuf::from(dir)),
        None => test_side(),
    }
}

#[cfg(not(unix))]
fn main() {}

/// Where the daemon role finds the test's sockets; absent in the test role.
#[cfg(unix)]
const PROBE_DIR: &str = "CNTLM_DAEMON_PROBE_DIR";

#[cfg(unix)]
use std::io::{BufRead, BufReader, Write};

/// The daemon role: everything `main` will do, in order, reporting back what it sees.
#[cfg(unix)]
fn daemon_side(dir: std::path::PathBuf) {
    use cntlm::daemon::{PidFile, PrivilegeDrop, Syslog, daemonize, drop_privileges};
    use tracing_subscriber::layer::SubscriberExt;

    // Opened before detaching, as main will: an unreachable syslog is reported on stderr.
    let syslog = Syslog::open(dir.join("log.sock"), "cntlm").expect("syslog reachable");
    daemonize().expect("daemonize");
    let dropped = if nix::unistd::geteuid().is_root() {
        match drop_privileges("nobody").expect("drop to nobody") {
            PrivilegeDrop::Dropped(identity) => identity.uid.to_string(),
            PrivilegeDrop::NotRoot => "not-root".to_owned(),
        }
    } else {
        "not-root".to_owned()
    };
    let pidfile = PidFile::create(dir.join("cntlm.pid")).expect("pid file");
    let subscriber = tracing_subscriber::registry().with(syslog.layer());
    tracing::subscriber::with_default(subscriber, || tracing::info!("probe detached"));

    let cwd = std::env::current_dir().map(|p| p.display().to_string());
    let stdin = std::fs::read_link("/proc/self/fd/0").map(|p| p.display().to_string());
    let report = format!(
        "pid={} sid={} uid={} dropped={} cwd={} stdin={}\n",
        std::process::id(),
        nix::unistd::getsid(None).map_or(-1, |s| s.as_raw()),
        nix::unistd::getuid(),
        dropped,
        cwd.unwrap_or_default(),
        stdin.unwrap_or_else(|_| "/dev/null".to_owned()),
    );
    let mut control =
        std::os::unix::net::UnixStream::connect(dir.join("control.sock")).expect("control");
    control.write_all(report.as_bytes()).expect("report");
    let mut go = String::new();
    BufReader::new(&control).read_line(&mut go).expect("go");
    drop(pidfile);
    control.write_all(b"done\n").expect("done");
}

/// Kills the daemon by pid if the test fails while it still runs.
#[cfg(unix)]
struct KillDaemon(Option<i32>);

#[cfg(unix)]
impl Drop for KillDaemon {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The test role.
#[cfg(unix)]
fn test_side() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::{UnixDatagram, UnixListener};
    use std::time::Duration;

    const DEADLINE: Duration = Duration::from_secs(20);
    println!("\nrunning 1 test");
    let dir = tempfile::tempdir().expect("tempdir");
    // The daemon drops to `nobody` when we are root: let it reach the sockets and write here.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let log = UnixDatagram::bind(dir.path().join("log.sock")).expect("fake /dev/log");
    log.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let control = UnixListener::bind(dir.path().join("control.sock")).expect("control");
    for socket in ["log.sock", "control.sock"] {
        let mode = std::fs::Permissions::from_mode(0o777);
        std::fs::set_permissions(dir.path().join(socket), mode).expect("chmod socket");
    }

    let status = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env(PROBE_DIR, dir.path())
        .status()
        .expect("start the probe");
    // daemon(3): the process we started exits 0 as soon as its child is detached.
    assert!(status.success(), "the foreground process failed: {status}");

    // accept() has no timeout in std: wait for the connection on a thread instead.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(control.accept());
    });
    let (stream, _) = rx
        .recv_timeout(DEADLINE)
        .expect("the daemon connects in time")
        .expect("accept");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut report = String::new();
    reader.read_line(&mut report).expect("report");
    let field = |name: &str| {
        report
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {report:?}"))
            .to_owned()
    };
    let pid: i32 = field("pid").parse().expect("pid");
    let mut guard = KillDaemon(Some(pid));

    assert_eq!(
        field("sid"),
        pid.to_string(),
        "setsid made the daemon a session leader"
    );
    assert_eq!(field("cwd"), "/", "chdir /");
    assert_eq!(field("stdin"), "/dev/null", "stdio on /dev/null");
    if nix::unistd::geteuid().is_root() {
        assert_eq!(field("dropped"), "65534");
        assert_eq!(field("uid"), "65534", "-U dropped root before the pid file");
    }
    let pidfile = dir.path().join("cntlm.pid");
    let written = std::fs::read_to_string(&pidfile).expect("pid file exists");
    assert_eq!(
        written,
        format!("{pid}\n"),
        "the pid file names the daemon, not its parent"
    );

    let mut line = vec![0u8; 1024];
    let n = log.recv(&mut line).expect("a syslog line");
    let line = String::from_utf8_lossy(&line[..n]).into_owned();
    assert!(line.starts_with("<30>"), "daemon.info: {line}");
    assert!(
        line.ends_with(&format!(" cntlm[{pid}]: probe detached")),
        "{line}"
    );

    (&stream).write_all(b"go\n").expect("go");
    let mut done = String::new();
    reader.read_line(&mut done).expect("done");
    assert_eq!(done, "done\n");
    assert!(
        !pidfile.exists(),
        "the pid file was removed on a clean exit"
    );
    guard.0 = None;
    println!("test daemon_detach ... ok\n\ntest result: ok. 1 passed; 0 failed");
}
