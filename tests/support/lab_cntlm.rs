//! Our binary in the lab, and the real clients driven through it (curl, git, pip), plus the
//! black-holed parent used by the failover tests.
//!
//! Include after `lab.rs`:
//! ```ignore
//! #[path = "support/lab.rs"] mod lab;
//! #[path = "support/lab_cntlm.rs"] mod lab_cntlm;
//! ```
#![allow(dead_code)]

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::lab::{
    ChildGuard, LabUser, free_port, lost_port_race, read_lossy, run_with_timeout, try_wait_for_port,
};

/// Deadline for one client command (curl, git, pip) in the lab.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// `cntlm -c <generated conf> -f` listening on a free 127.0.0.1 port.
pub struct Cntlm {
    /// The port it listens on.
    pub port: u16,
    guard: ChildGuard,
    dir: tempfile::TempDir,
}

impl Cntlm {
    /// Starts cntlm with `Listen 127.0.0.1:<free port>` followed by `config` (keyword lines)
    /// and waits until the port accepts connections.
    pub fn start(config: &str) -> Cntlm {
        Self::start_with_env(config, &[])
    }

    /// `start` with extra environment variables for the child (e.g. a Kerberos realm's
    /// `KRB5_CONFIG` and `KRB5CCNAME`).
    pub fn start_with_env(config: &str, env: &[(String, String)]) -> Cntlm {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(config, env) {
                Ok(cntlm) => return cntlm,
                Err(why) if lost_port_race(&why) => last = why,
                Err(why) => panic!("{why}"),
            }
        }
        panic!("cntlm lost the race for a free port three times: {last}");
    }

    fn try_start(config: &str, env: &[(String, String)]) -> Result<Cntlm, String> {
        let dir = tempfile::Builder::new()
            .prefix("cntlm-lab-cntlm")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let conf = dir.path().join("cntlm.conf");
        fs::write(&conf, format!("Listen 127.0.0.1:{port}\n{config}")).expect("write cntlm.conf");
        let log = dir.path().join("cntlm.log");
        let log_file = fs::File::create(&log).expect("create cntlm.log");
        let child = Command::new(binary())
            .arg("-c")
            .arg(&conf)
            .arg("-f")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file)
            .spawn()
            .expect("start the cntlm binary");
        let mut guard = ChildGuard::new("cntlm", child);
        try_wait_for_port(port, &mut guard, &log)?;
        Ok(Cntlm { port, guard, dir })
    }

    /// `http://127.0.0.1:<port>`, for `curl -x`, `http_proxy`, git's `http.proxy`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What cntlm printed (stdout and stderr).
    pub fn log(&self) -> String {
        read_lossy(&self.dir.path().join("cntlm.log"))
    }

    /// A scratch directory that lives as long as this cntlm.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// The process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Rewrites the config file as [`Cntlm::start`] wrote it (same `Listen` line) with
    /// `config` after it, for a SIGHUP reload.
    pub fn rewrite_config(&self, config: &str) {
        let conf = self.dir.path().join("cntlm.conf");
        fs::write(&conf, format!("Listen 127.0.0.1:{}\n{config}", self.port))
            .expect("rewrite cntlm.conf");
    }

    /// Waits (up to a minute) until the log holds `needle` at least `count` times; false if
    /// it never does.
    pub fn wait_for_log(&self, needle: &str, count: usize) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if self.log().matches(needle).count() >= count {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// The binary under test: ours, or the one named by `CNTLM_LAB_BIN` (e.g. Debian's CNTLM
/// 0.92.3 at /usr/sbin/cntlm, to check the lab tests against the program we replace: it must
/// pass the plain cases and fail where it is known to be buggy).
fn binary() -> PathBuf {
    std::env::var_os("CNTLM_LAB_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cntlm")))
}

/// Config lines for the given parents (in order) authenticating as `user` with `auth`
/// (`NTLMv2`, `NTLM`, `LM`, `NT`, `NTLM2SR`).
pub fn parent_config(parents: &[u16], user: &LabUser, auth: &str) -> String {
    let mut conf = String::new();
    for port in parents {
        conf.push_str(&format!("Proxy 127.0.0.1:{port}\n"));
    }
    conf.push_str(&format!(
        "Username {}\nDomain {}\nPassword {}\nAuth {auth}\n",
        user.user, user.domain, user.password
    ));
    conf
}

/// What curl reported: the status of the last response, the body, and curl's stderr.
#[derive(Debug)]
pub struct CurlResult {
    /// `%{http_code}` of the last transfer (0 when none completed).
    pub status: u16,
    /// The response body (of every URL, concatenated).
    pub body: Vec<u8>,
    /// curl's own messages (without the status marker).
    pub stderr: String,
    /// curl's exit code.
    pub exit_code: Option<i32>,
}

impl CurlResult {
    /// The body parsed as the origin's `/echo` JSON.
    pub fn echo(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not echo JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

const STATUS_MARK: &str = "@@status=";

/// Runs curl with `args`, through `proxy` when given (else with `--noproxy '*'`), with a
/// deadline. The status of each transfer is written to stderr after a marker.
pub fn curl(proxy: Option<&str>, args: &[&str]) -> CurlResult {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "110",
        "-w",
        "%{stderr}@@status=%{http_code}\\n",
    ]);
    match proxy {
        Some(p) => cmd.args(["-x", p]),
        None => cmd.args(["--noproxy", "*"]),
    };
    cmd.args(args);
    let out = run_with_timeout(&mut cmd, CLIENT_TIMEOUT);
    let stderr_all = String::from_utf8_lossy(&out.stderr).into_owned();
    let status = stderr_all
        .lines()
        .filter_map(|l| l.strip_prefix(STATUS_MARK))
        .next_back()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let stderr = stderr_all
        .lines()
        .filter(|l| !l.starts_with(STATUS_MARK))
        .collect::<Vec<_>>()
        .join("\n");
    CurlResult {
        status,
        body: out.stdout,
        stderr,
        exit_code: out.status.code(),
    }
}

/// `git clone <url> <dest>` through `proxy`, with a clean git environment.
pub fn git_clone(proxy: &str, url: &str, dest: &Path) -> Output {
    let home = dest
        .parent()
        .expect("clone destination has a parent")
        .join("git-home");
    fs::create_dir_all(&home).expect("create git home");
    let mut cmd = Command::new("git");
    cmd.env("HOME", &home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .args(["-c", &format!("http.proxy={proxy}")])
        .args(["-c", "http.lowSpeedLimit=1", "-c", "http.lowSpeedTime=60"])
        .args(["clone", "-q", url])
        .arg(dest);
    run_with_timeout(&mut cmd, CLIENT_TIMEOUT)
}

/// `git -C <repo> rev-parse HEAD`.
pub fn git_head(repo: &Path) -> String {
    let out = run_with_timeout(
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["rev-parse", "HEAD"]),
        Duration::from_secs(30),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `pip download <package>` from `index` into `dest` through `proxy` (Debian's pip).
pub fn pip_download(proxy: &str, index: &str, package: &str, dest: &Path) -> Output {
    let mut cmd = Command::new(crate::lab::SYSTEM_PYTHON);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "-q",
    ])
    .args(["--retries", "0", "--timeout", "60"])
    .args(["--proxy", proxy, "--index-url", index, "-d"])
    .arg(dest)
    .arg(package)
    .env("PIP_CONFIG_FILE", "/dev/null");
    run_with_timeout(&mut cmd, CLIENT_TIMEOUT)
}

/// A parent address that black-holes connection attempts, as a firewall dropping SYNs does:
/// a listener with a backlog of 0 whose accept queue we fill ourselves and never accept from.
/// Further SYNs to it are dropped by the kernel, so a connect() to it times out rather than
/// being refused or answered. (A listener that accepts and stays silent would test the
/// first-byte timeout instead; a black-holed parent is the connect-timeout case.)
pub struct BlackHole {
    /// The port that black-holes.
    pub port: u16,
    _listener: socket2::Socket,
    _fillers: Vec<TcpStream>,
}

impl BlackHole {
    /// Creates the black hole and checks that a connect() to it really times out.
    pub fn new() -> BlackHole {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        socket.bind(&addr.into()).expect("bind black hole");
        socket.listen(0).expect("listen(0)");
        let local = socket
            .local_addr()
            .expect("local_addr")
            .as_socket()
            .expect("an IPv4 socket address");
        let mut fillers = Vec::new();
        for _ in 0..16 {
            match TcpStream::connect_timeout(&local, Duration::from_millis(300)) {
                Ok(stream) => fillers.push(stream),
                Err(_) => {
                    return BlackHole {
                        port: local.port(),
                        _listener: socket,
                        _fillers: fillers,
                    };
                }
            }
        }
        panic!("could not fill the black hole's accept queue with 16 connections");
    }
}

/// Writes `size` bytes of varied (not constant) content to `path` for upload tests.
pub fn write_upload_file(path: &Path, size: usize) {
    let mut data = Vec::with_capacity(size);
    let mut x: u32 = 0x1234_5678;
    while data.len() < size {
        // xorshift32: cheap varied bytes, so truncation or reordering changes the hash.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(size);
    fs::write(path, data).expect("write upload file");
}
