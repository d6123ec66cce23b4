//! The real test lab of DESIGN.md §3: Squid parents that really verify NTLM (through the
//! pyspnego helper in `tests/lab/ntlm_auth_helper.py`), origins (`tests/lab/origin.py`), and
//! the processes' lifetimes.
//!
//! Include it from a test file with `#[path = "support/lab.rs"] mod lab;` (there is no
//! `tests/support/mod.rs` on purpose: other support files are included the same way).
//! `lab_cntlm.rs` beside it starts our binary and drives real clients through it.
//!
//! Every process is started on 127.0.0.1, owned by a [`ChildGuard`] and killed by its PID when
//! the guard drops, also when a test panics. Squid cannot be handed a listening socket, so its
//! port is found free just before it starts (bind port 0, read it, close it); the origin binds
//! port 0 itself and reports its ports on stdout, so it has no such race.
//! The system packages come from `scripts/install-test-deps`.
#![allow(dead_code)]

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

#[path = "lab_origin.rs"]
mod origin;
pub use origin::Origin;

/// Where `scripts/install-test-deps` puts pyspnego, readable by Squid's helper user `proxy`.
pub const LAB_PYLIB: &str = "/opt/cntlm-lab/pylib";
/// The Python that runs the helpers: Debian's, because user `proxy` cannot run pyenv's.
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";
const SQUID: &str = "/usr/sbin/squid";
/// How long a lab process may take to start listening.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);
/// SHA-256 of the origin's first 100 MiB (`/bytes/104857600`): see `origin.py`.
pub const SHA256_100_MIB: &str = "2ec84c4015454ebf3360d00c8f0e0bea67d12e1b36664a40804afabc2a097c91";
/// 100 MiB, the large download of issue 3 §6.
pub const SIZE_100_MIB: u64 = 100 * 1024 * 1024;

/// A process the test started; killed (SIGKILL) and reaped by PID when dropped.
pub struct ChildGuard {
    child: Child,
    name: String,
}

impl ChildGuard {
    /// Takes ownership of `child`, named for diagnostics.
    pub fn new(name: &str, child: Child) -> Self {
        Self {
            child,
            name: name.to_string(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` when the process has already exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills the process now (idempotent).
    pub fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    fn stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it, close).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("local_addr of a bound listener")
        .port()
}

/// Polls until 127.0.0.1:`port` accepts a connection; panics with `log` if `guard`'s process
/// exits first or `START_TIMEOUT` passes.
pub fn wait_for_port(port: u16, guard: &mut ChildGuard, log: &Path) {
    if let Err(why) = try_wait_for_port(port, guard, log) {
        panic!("{why}");
    }
}

/// Like [`wait_for_port`], but returns why the process did not come up.
pub fn try_wait_for_port(port: u16, guard: &mut ChildGuard, log: &Path) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = guard.exited() {
            return Err(format!(
                "{} exited ({status}) before listening on {port}; its log:\n{}",
                guard.name(),
                read_lossy(log)
            ));
        }
        if Instant::now() > deadline {
            guard.kill();
            return Err(format!(
                "{} did not listen on {port} in {START_TIMEOUT:?}; log:\n{}",
                guard.name(),
                read_lossy(log)
            ));
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// True when a start failure reads like a lost race for the port (another process took the
/// port between our probe and the server's bind): worth one more try on another port.
pub fn lost_port_race(why: &str) -> bool {
    let why = why.to_ascii_lowercase();
    why.contains("address already in use")
        || why.contains("addrinuse")
        || why.contains("cannot bind")
}

/// True when Squid failed because another Squid starting at the same time held the same
/// shared-memory segment name: worth another try.
pub fn lost_shm_race(why: &str) -> bool {
    why.contains("shm_open") && why.contains("File exists")
}

/// A file's text, or an empty string when it does not exist (yet).
pub fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Runs `cmd` to completion with a deadline (killing it past the deadline and panicking).
/// Proxy variables of the environment are removed so only explicit options route traffic.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.env_remove("no_proxy").env_remove("NO_PROXY");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut out = child.stdout.take().expect("stdout was piped");
    let mut err = child.stderr.take().expect("stderr was piped");
    let out_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut buf);
        buf
    });
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait on our child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_reader.join().expect("stdout reader thread"),
        stderr: err_reader.join().expect("stderr reader thread"),
    }
}

/// SHA-256 (lower-case hex) of `data`, computed by coreutils' `sha256sum`.
pub fn sha256_hex(data: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("data");
    fs::write(&path, data).expect("write temp data");
    sha256_file(&path)
}

/// SHA-256 (lower-case hex) of the file at `path`, by `sha256sum`.
pub fn sha256_file(path: &Path) -> String {
    let out = run_with_timeout(
        Command::new("sha256sum").arg(path),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "sha256sum failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .chars()
        .take(64)
        .collect()
}

/// A temp dir that Squid's user `proxy` may read and write (logs, pid file, helper logs).
pub fn world_writable_tempdir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod temp dir");
    dir
}

/// The lab scripts shipped in `tests/lab/`.
pub fn lab_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/lab")
        .join(name)
}

fn require_lab_installed() {
    let spnego = Path::new(LAB_PYLIB).join("spnego/__init__.py");
    assert!(
        Path::new(SQUID).exists() && Path::new(SYSTEM_PYTHON).exists() && spnego.exists(),
        "the test lab is not installed (squid, /usr/bin/python3, pyspnego in {LAB_PYLIB}): \
         run scripts/install-test-deps as root"
    );
}

// ------------------------------------------------------------------------------------------
// Squid parents
// ------------------------------------------------------------------------------------------

/// How a lab Squid authenticates its clients (the variants of DESIGN.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParentAuth {
    /// NTLM through pyspnego with LM_COMPAT_LEVEL 5: only NTLMv2 passes. AD-like Type 2.
    NtlmV2Only,
    /// NTLM with LM_COMPAT_LEVEL 0: LM, NTLMv1, NTLM2SR and NTLMv2 pass. AD-like Type 2.
    NtlmLegacy,
    /// NTLMv2-only, with a Type 2 that carries no TargetInfo.
    NtlmNoTargetInfo,
    /// NTLM (NTLMv2 only) and Basic both offered.
    NtlmAndBasic,
    /// Basic only.
    BasicOnly,
    /// No authentication at all.
    None,
}

/// A lab account. The helpers' credential file holds every account of [`LAB_USERS`].
#[derive(Clone, Copy, Debug)]
pub struct LabUser {
    /// NetBIOS domain.
    pub domain: &'static str,
    /// User name.
    pub user: &'static str,
    /// Password (plain text: this is a throwaway lab account).
    pub password: &'static str,
}

/// An ASCII account.
pub const ALICE: LabUser = LabUser {
    domain: "LAB",
    user: "alice",
    password: "Secret-1",
};
/// An account whose password is not ASCII (hashed as UTF-16LE by MS-NLMP §3.3.1).
pub const BOB_NON_ASCII: LabUser = LabUser {
    domain: "LAB",
    user: "bob",
    password: "Pässwörd-€1",
};
/// Every account the lab's helpers accept.
pub const LAB_USERS: [LabUser; 2] = [ALICE, BOB_NON_ASCII];

/// One Squid process with its own directory (config, logs, pid file, helper log).
pub struct Squid {
    /// The port Squid listens on (127.0.0.1).
    pub port: u16,
    /// The auth variant it runs.
    pub auth: ParentAuth,
    guard: ChildGuard,
    dir: tempfile::TempDir,
}

impl Squid {
    /// Starts Squid with `auth` on a free port and waits until it accepts connections.
    pub fn start(auth: ParentAuth) -> Squid {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start_on(auth, free_port()) {
                Ok(squid) => return squid,
                Err(why) if lost_port_race(&why) || lost_shm_race(&why) => last = why,
                Err(why) => panic!("{why}"),
            }
        }
        panic!("squid lost the race for a free port three times: {last}");
    }

    /// Starts Squid with `auth` on `port` (e.g. a port a test kept free to start it later).
    /// Squids starting at the same instant can collide on a shared-memory segment name
    /// (`shm_open(...): File exists`); that start is tried again, on the same port.
    pub fn start_on(auth: ParentAuth, port: u16) -> Squid {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start_on(auth, port) {
                Ok(squid) => return squid,
                Err(why) if lost_shm_race(&why) => last = why,
                Err(why) => panic!("{why}"),
            }
        }
        panic!("squid lost the shared-memory race three times: {last}");
    }

    fn try_start_on(auth: ParentAuth, port: u16) -> Result<Squid, String> {
        require_lab_installed();
        let dir = world_writable_tempdir("cntlm-lab-squid");
        let d = dir.path();
        for script in ["ntlm_auth_helper.py", "basic_auth_helper.py"] {
            // A copy: user `proxy` may not be able to read the checkout.
            fs::copy(lab_script(script), d.join(script)).expect("copy lab helper");
            fs::set_permissions(d.join(script), fs::Permissions::from_mode(0o755))
                .expect("chmod helper");
        }
        let users: String = LAB_USERS
            .iter()
            .map(|u| format!("{}:{}:{}\n", u.domain, u.user, u.password))
            .collect();
        fs::write(d.join("users"), users).expect("write users file");
        fs::set_permissions(d.join("users"), fs::Permissions::from_mode(0o644))
            .expect("chmod users");
        fs::write(d.join("squid.conf"), squid_conf(d, port, auth)).expect("write squid.conf");
        let log = d.join("squid.out");
        let child = Command::new(SQUID)
            .arg("-N")
            .arg("-f")
            .arg(d.join("squid.conf"))
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).expect("create squid.out"))
            .stderr(Stdio::from(
                fs::File::create(d.join("squid.err")).expect("create squid.err"),
            ))
            .spawn()
            .expect("start squid");
        let mut guard = ChildGuard::new("squid", child);
        try_wait_for_port(port, &mut guard, &d.join("cache.log"))?;
        Ok(Squid {
            port,
            auth,
            guard,
            dir,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The helpers' decision log (one line per YR / KK / BASIC check).
    pub fn helper_log(&self) -> String {
        read_lossy(&self.dir.path().join("helper.log"))
    }

    /// Lines of the helper log that start (after the time stamp) with `kind` (`YR`, `KK`,
    /// `BASIC`).
    pub fn helper_lines(&self, kind: &str) -> Vec<String> {
        self.helper_log()
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some(kind))
            .map(str::to_string)
            .collect()
    }

    /// NTLM handshakes started (Type 1 messages the helper answered).
    pub fn ntlm_handshakes(&self) -> usize {
        self.helper_lines("YR").len()
    }

    /// Type 3 messages the helper judged.
    pub fn type3_count(&self) -> usize {
        self.helper_lines("KK").len()
    }

    /// Type 3 messages accepted.
    pub fn accepted(&self) -> Vec<String> {
        self.helper_lines("KK")
            .into_iter()
            .filter(|l| l.contains("verdict=AF"))
            .collect()
    }

    /// Type 3 messages refused.
    pub fn rejected(&self) -> Vec<String> {
        self.helper_lines("KK")
            .into_iter()
            .filter(|l| l.contains("verdict=NA"))
            .collect()
    }

    /// Squid's access log (one line per request it answered).
    pub fn access_log(&self) -> String {
        read_lossy(&self.dir.path().join("access.log"))
    }

    /// The access log once `done` holds for it, or as it is after `timeout`. Squid writes a
    /// transaction's line only after the client already has the response, so a test that
    /// counts lines right after its last request must wait for the writes to land.
    pub fn access_log_when(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.access_log();
            if done(&log) || Instant::now() >= deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Requests in the access log that Squid forwarded (not its own 407s).
    ///
    /// Squid writes a line just after the client has its response, so the count is read
    /// until it has held still for 100 ms (at most 2 s): a test that counts right after its
    /// last request would otherwise race the last write.
    pub fn forwarded_requests(&self) -> usize {
        let count = || {
            self.access_log()
                .lines()
                .filter(|l| !l.contains("/407 ") && !l.contains("NONE_NONE/"))
                .count()
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut last = count();
        let mut still_since = Instant::now();
        while Instant::now() < deadline && still_since.elapsed() < Duration::from_millis(100) {
            std::thread::sleep(Duration::from_millis(20));
            let now = count();
            if now != last {
                last = now;
                still_since = Instant::now();
            }
        }
        last
    }

    /// Squid's cache.log, for diagnostics.
    pub fn cache_log(&self) -> String {
        read_lossy(&self.dir.path().join("cache.log"))
    }

    /// Stops Squid now (its port then refuses connections).
    pub fn stop(&mut self) {
        self.guard.kill();
    }
}

fn squid_conf(dir: &Path, port: u16, auth: ParentAuth) -> String {
    let d = dir.display();
    let helper = |extra: &str| {
        format!(
            "{SYSTEM_PYTHON} {d}/ntlm_auth_helper.py --users {d}/users --log {d}/helper.log \
             --pylib {LAB_PYLIB} {extra}"
        )
    };
    let basic =
        format!("{SYSTEM_PYTHON} {d}/basic_auth_helper.py --users {d}/users --log {d}/helper.log");
    let ntlm_lines = |extra: &str| {
        format!(
            "auth_param ntlm program {}\nauth_param ntlm children 8 startup=1 idle=1\n",
            helper(extra)
        )
    };
    let basic_lines = format!(
        "auth_param basic program {basic}\nauth_param basic children 4 startup=1 idle=1\n\
         auth_param basic realm cntlm-lab\nauth_param basic credentialsttl 1 second\n"
    );
    let auth_lines = match auth {
        ParentAuth::NtlmV2Only => ntlm_lines("--lm-compat 5 --challenge ad"),
        ParentAuth::NtlmLegacy => ntlm_lines("--lm-compat 0 --challenge ad"),
        ParentAuth::NtlmNoTargetInfo => ntlm_lines("--lm-compat 5 --challenge no-target-info"),
        ParentAuth::NtlmAndBasic => ntlm_lines("--lm-compat 5 --challenge ad") + &basic_lines,
        ParentAuth::BasicOnly => basic_lines,
        ParentAuth::None => String::new(),
    };
    let access = if auth == ParentAuth::None {
        "http_access allow all\n".to_string()
    } else {
        "acl authed proxy_auth REQUIRED\nhttp_access deny !authed\nhttp_access allow all\n"
            .to_string()
    };
    // Our whole config, none of Debian's defaults: so no `deny to_localhost` (the origins are on
    // 127.0.0.1) and no Safe_ports/SSL_ports (CONNECT to the origin's TLS port is allowed).
    format!(
        "http_port 127.0.0.1:{port}\n\
         visible_hostname cntlm-lab-squid\n\
         pid_filename {d}/squid.pid\n\
         cache_log {d}/cache.log\n\
         access_log stdio:{d}/access.log\n\
         cache_store_log none\n\
         cache deny all\n\
         cache_mem 8 MB\n\
         coredump_dir {d}\n\
         netdb_filename none\n\
         pinger_enable off\n\
         icp_port 0\n\
         htcp_port 0\n\
         shutdown_lifetime 0 seconds\n\
         dns_nameservers 127.0.0.1\n\
         cache_effective_user proxy\n\
         {auth_lines}\
         {access}"
    )
}
