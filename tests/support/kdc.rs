//! A throwaway MIT Kerberos realm on loopback, and Squid authenticating with it (DESIGN.md §3).
//!
//! Everything lives in a temporary directory and is reached through `KRB5_CONFIG`,
//! `KRB5_KDC_PROFILE`, `KRB5CCNAME` and `KRB5_KTNAME`: nothing under /etc is read or written.
//! The realm has a user with a password (`alice`), a user with only a keytab (`robot`) and
//! the service `HTTP/localhost` whose keytab Squid's `negotiate_kerberos_auth` uses. `rdns`
//! and `dns_canonicalize_hostname` are off, so `HTTP@localhost` means exactly that.
//!
//! The KDC (`krb5kdc -n`) and Squid (`squid -N`) run in the foreground as our children and are
//! killed by PID when their guard drops, also when a test panics. Tests that need the lab call
//! [`Kdc::start`], which installs the packages through `scripts/install-test-deps` when they
//! are missing and returns `None` (after a loud message) only where that cannot be done;
//! under `CI` a missing lab is a failure, never a skip.

#![allow(dead_code)] // each test binary uses part of the lab

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The realm's name.
pub const REALM: &str = "CNTLM.TEST";
/// The user whose password tests use.
pub const USER: &str = "alice";
/// `alice`'s password.
pub const PASSWORD: &str = "Kerb-Pass-1";
/// The user who only has a keytab.
pub const ROBOT: &str = "robot";
/// Where Debian installs Squid's Kerberos helper.
pub const SQUID_HELPER: &str = "/usr/lib/squid/negotiate_kerberos_auth";

/// How long a daemon gets to start listening before the lab gives up.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// The programs the lab runs.
const KDC_TOOLS: &[&str] = &["krb5kdc", "kdb5_util", "kadmin.local", "kinit"];

/// Finds a program on `PATH` or in the sbin directories that root's `PATH` may lack.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn missing_tools(with_squid: bool) -> Vec<String> {
    let mut missing: Vec<String> = KDC_TOOLS
        .iter()
        .filter(|t| find_program(t).is_none())
        .map(|t| t.to_string())
        .collect();
    if with_squid {
        if find_program("squid").is_none() {
            missing.push("squid".into());
        }
        if !Path::new(SQUID_HELPER).is_file() {
            missing.push(SQUID_HELPER.into());
        }
    }
    missing
}

/// Makes sure the lab's packages are there: installs them once if not. `Err` says what is
/// missing when they cannot be installed (the caller skips loudly, or fails under CI).
pub fn ensure_tools(with_squid: bool) -> Result<(), String> {
    if missing_tools(with_squid).is_empty() {
        return Ok(());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-test-deps");
    let status = Command::new(&script).status();
    let missing = missing_tools(with_squid);
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "missing {} and {} could not install them ({status:?})",
        missing.join(", "),
        script.display()
    ))
}

/// The Python that has Debian's `python3-gssapi` (not a pyenv or venv one found on `PATH`).
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Makes sure `tests/support/spnego_accept.py` can run (installs `python3-gssapi` if needed).
pub fn ensure_acceptor() -> Result<(), String> {
    let works = || {
        Command::new(SYSTEM_PYTHON)
            .args(["-c", "import gssapi"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works() {
        return Ok(());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-test-deps");
    let status = Command::new(&script).status();
    if works() {
        return Ok(());
    }
    Err(format!(
        "{SYSTEM_PYTHON} cannot import gssapi (python3-gssapi) and {} could not install it \
         ({status:?})",
        script.display()
    ))
}

/// Reports a lab that cannot run: loud, and fatal under CI where the packages must be there.
pub fn skip_or_fail(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("the Kerberos lab cannot run under CI: {why}");
    }
    eprintln!("\n!!!!!!!! SKIPPED: Kerberos lab unavailable: {why} !!!!!!!!\n");
}

/// A port that was free a moment ago (for daemons that cannot report the one they bound).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 works");
    listener
        .local_addr()
        .expect("a bound socket has an address")
        .port()
}

/// Runs `start` up to three times: a port found free can be taken by someone else before the
/// daemon binds it, and then the daemon exits and we try again on a new port.
fn with_port_retries<T>(mut start: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let mut errors = Vec::new();
    for _ in 0..3 {
        match start() {
            Ok(started) => return Ok(started),
            Err(e) => errors.push(e),
        }
    }
    Err(errors.join("\n--- next attempt ---\n"))
}

/// Waits until something accepts on `127.0.0.1:port`, or `child` exits, or the deadline passes.
fn wait_listening(child: &mut Child, port: u16, what: &str, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
            .is_ok()
        {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!(
                "{what} exited with {status} before listening:\n{log}"
            ));
        }
        if Instant::now() > deadline {
            return Err(format!("{what} did not listen on port {port} in time"));
        }
        // Polling for readiness (neither daemon can signal it); not timing a test result.
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn run(
    program: &str,
    args: &[&str],
    envs: &[(String, String)],
    stdin: Option<&str>,
) -> Result<String, String> {
    let path = find_program(program).ok_or_else(|| format!("{program} not found"))?;
    let mut child = Command::new(path)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    if let (Some(mut input), Some(text)) = (child.stdin.take(), stdin) {
        let _ = input.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "{program} {args:?} failed ({}): {text}",
            out.status
        ))
    }
}

/// A running realm: its files and its KDC.
pub struct Kdc {
    /// The temporary directory holding the database, configs, keytabs and caches.
    dir: tempfile::TempDir,
    /// The KDC's port on 127.0.0.1 (UDP and TCP).
    pub port: u16,
    /// `krb5.conf` for clients (`KRB5_CONFIG`).
    pub krb5_conf: PathBuf,
    /// `kdc.conf` (`KRB5_KDC_PROFILE`).
    pub kdc_conf: PathBuf,
    /// Keytab of `HTTP/localhost` (the acceptor's, for Squid).
    pub http_keytab: PathBuf,
    /// Keytab of `robot` (a client keytab).
    pub client_keytab: PathBuf,
    /// The KDC process.
    child: Child,
}

impl Kdc {
    /// Creates the realm and starts its KDC; `None` after [`skip_or_fail`] when the lab's
    /// packages are absent and cannot be installed.
    pub fn start() -> Option<Kdc> {
        if let Err(why) = ensure_tools(false) {
            skip_or_fail(&why);
            return None;
        }
        Some(
            with_port_retries(Kdc::create).unwrap_or_else(|e| panic!("starting the test KDC: {e}")),
        )
    }

    fn create() -> Result<Kdc, String> {
        let dir = tempfile::Builder::new()
            .prefix("cntlm-krb-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let d = dir.path();
        let port = free_port();
        let krb5_conf = d.join("krb5.conf");
        let kdc_conf = d.join("kdc.conf");
        let write =
            |path: &Path, text: String| std::fs::write(path, text).map_err(|e| e.to_string());
        write(
            &krb5_conf,
            format!(
                "[libdefaults]\n\
                 \tdefault_realm = {REALM}\n\
                 \tdns_lookup_kdc = false\n\
                 \tdns_lookup_realm = false\n\
                 \trdns = false\n\
                 \tdns_canonicalize_hostname = false\n\
                 \tdefault_ccache_name = FILE:{d}/default.ccache\n\
                 \tdefault_client_keytab_name = FILE:{d}/no-default-client.keytab\n\
                 [realms]\n\
                 \t{REALM} = {{\n\t\tkdc = 127.0.0.1:{port}\n\t}}\n\
                 [domain_realm]\n\
                 \tlocalhost = {REALM}\n",
                d = d.display()
            ),
        )?;
        write(
            &kdc_conf,
            format!(
                "[kdcdefaults]\n\
                 \tkdc_listen = 127.0.0.1:{port}\n\
                 \tkdc_tcp_listen = 127.0.0.1:{port}\n\
                 [realms]\n\
                 \t{REALM} = {{\n\
                 \t\tdatabase_name = {d}/principal\n\
                 \t\tkey_stash_file = {d}/stash\n\
                 \t\tacl_file = {d}/kadm5.acl\n\
                 \t\tkdc_listen = 127.0.0.1:{port}\n\
                 \t\tkdc_tcp_listen = 127.0.0.1:{port}\n\
                 \t}}\n\
                 [logging]\n\
                 \tkdc = FILE:{d}/kdc.log\n\
                 \tdefault = FILE:{d}/kdc.log\n",
                d = d.display()
            ),
        )?;
        write(&d.join("kadm5.acl"), String::new())?;
        let http_keytab = d.join("http.keytab");
        let client_keytab = d.join("robot.keytab");
        let envs = vec![
            ("KRB5_CONFIG".to_string(), krb5_conf.display().to_string()),
            (
                "KRB5_KDC_PROFILE".to_string(),
                kdc_conf.display().to_string(),
            ),
        ];
        run(
            "kdb5_util",
            &["create", "-s", "-r", REALM, "-P", "master-key-pw"],
            &envs,
            None,
        )?;
        for query in [
            format!("addprinc -pw {PASSWORD} {USER}"),
            format!("addprinc -randkey {ROBOT}"),
            "addprinc -randkey HTTP/localhost".to_string(),
            format!("ktadd -k {} HTTP/localhost", http_keytab.display()),
            format!("ktadd -k {} {ROBOT}", client_keytab.display()),
        ] {
            run("kadmin.local", &["-r", REALM, "-q", &query], &envs, None)?;
        }
        let log = d.join("kdc.log");
        let mut child = Command::new(find_program("krb5kdc").ok_or("krb5kdc not found")?)
            .args(["-n", "-r", REALM])
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("krb5kdc: {e}"))?;
        if let Err(e) = wait_listening(&mut child, port, "krb5kdc", &log) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok(Kdc {
            dir,
            port,
            krb5_conf,
            kdc_conf,
            http_keytab,
            client_keytab,
            child,
        })
    }

    /// The temporary directory (for caches and files a test makes).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The environment a Kerberos client of this realm needs; `KRB5CCNAME` points at `ccache`.
    pub fn client_env(&self, ccache: &Path) -> Vec<(String, String)> {
        vec![
            ("KRB5_CONFIG".into(), self.krb5_conf.display().to_string()),
            (
                "KRB5_KDC_PROFILE".into(),
                self.kdc_conf.display().to_string(),
            ),
            ("KRB5CCNAME".into(), format!("FILE:{}", ccache.display())),
            (
                "KRB5_KTNAME".into(),
                format!("FILE:{}", self.http_keytab.display()),
            ),
        ]
    }

    /// `kinit alice` into `ccache` with her password.
    pub fn kinit(&self, ccache: &Path) -> Result<(), String> {
        run(
            "kinit",
            &["-c", &format!("FILE:{}", ccache.display()), USER],
            &self.client_env(ccache),
            Some(&format!("{PASSWORD}\n")),
        )
        .map(|_| ())
    }

    /// The KDC's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("kdc.log")).unwrap_or_default()
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        // Kill by our child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Squid on 127.0.0.1 requiring Negotiate, verified by `negotiate_kerberos_auth` against the
/// realm's `HTTP/localhost` keytab. Address it as `localhost` so clients ask for that SPN.
pub struct Squid {
    /// The directory holding squid.conf and its logs (owned by Squid's run-time user).
    dir: PathBuf,
    /// Squid's port on 127.0.0.1.
    pub port: u16,
    /// The Squid process.
    child: Child,
}

impl Squid {
    /// Starts Squid for `kdc`; `None` after [`skip_or_fail`] when Squid or its helper is absent
    /// and cannot be installed.
    pub fn start(kdc: &Kdc) -> Option<Squid> {
        Self::start_with(kdc, "")
    }

    /// `start` with `extra` squid.conf lines after the Negotiate ones (another `auth_param`
    /// scheme, a `logformat`): Squid offers its schemes in the order they are configured.
    pub fn start_with(kdc: &Kdc, extra: &str) -> Option<Squid> {
        if let Err(why) = ensure_tools(true) {
            skip_or_fail(&why);
            return None;
        }
        Some(
            with_port_retries(|| Squid::create(kdc, extra))
                .unwrap_or_else(|e| panic!("starting Squid: {e}")),
        )
    }

    fn create(kdc: &Kdc, extra: &str) -> Result<Squid, String> {
        use std::os::unix::fs::PermissionsExt;
        let port = free_port();
        // One directory per attempt, so a retry never meets a previous attempt's pid file.
        let dir = kdc.dir().join(format!("squid-{port}"));
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        // Squid started as root runs as its own user (Debian: `proxy`), as does its helper:
        // that user must reach the realm directory, read the keytab and write Squid's logs.
        let world_readable = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| e.to_string())
        };
        world_readable(kdc.dir(), 0o755)?;
        world_readable(&kdc.krb5_conf, 0o644)?;
        world_readable(&kdc.http_keytab, 0o644)?;
        world_readable(&dir, 0o777)?;
        let conf = dir.join("squid.conf");
        let d = dir.display();
        std::fs::write(
            &conf,
            format!(
                "http_port 127.0.0.1:{port}\n\
                 pid_filename {d}/squid.pid\n\
                 cache_log {d}/cache.log\n\
                 access_log stdio:{d}/access.log\n\
                 cache_store_log none\n\
                 netdb_filename none\n\
                 coredump_dir {d}\n\
                 cache deny all\n\
                 shutdown_lifetime 0 seconds\n\
                 auth_param negotiate program {SQUID_HELPER} -k {keytab} -s HTTP/localhost@{REALM} -c {d}\n\
                 auth_param negotiate children 2 startup=1 idle=1\n\
                 auth_param negotiate keep_alive on\n\
                 {extra}\n\
                 acl authenticated proxy_auth REQUIRED\n\
                 http_access allow authenticated\n\
                 http_access deny all\n",
                keytab = kdc.http_keytab.display(),
            ),
        )
        .map_err(|e| e.to_string())?;
        let env = kdc.client_env(&kdc.dir().join("squid.ccache"));
        let mut child = Command::new(find_program("squid").ok_or("squid not found")?)
            .args(["-N", "-f"])
            .arg(&conf)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("squid: {e}"))?;
        if let Err(e) = wait_listening(&mut child, port, "squid", &dir.join("cache.log")) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok(Squid { dir, port, child })
    }

    /// Squid's cache.log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("cache.log")).unwrap_or_default()
    }

    /// The directory of squid.conf and its logs (for logs an `extra` line adds).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        // Kill by our child's PID only; its helpers exit when their pipes close.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An origin on 127.0.0.1 that answers each request with `200` and body `ok`, until dropped.
pub struct Origin {
    /// Its port.
    pub port: u16,
    /// Set on drop; the accept loop notices on its next connection.
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Origin {
    /// Starts serving on a fresh port.
    pub fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 works");
        let port = listener.local_addr().expect("bound").port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n")
                    && conn.read(&mut byte).map(|n| n == 1).unwrap_or(false)
                {
                    head.push(byte[0]);
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
        Origin { port, stop }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so its thread ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Sends `GET http://127.0.0.1:<origin>/` through the proxy at `127.0.0.1:proxy_port` with the
/// given `Proxy-Authorization` value (if any) and returns the response's status code.
pub fn proxy_get_status(
    proxy_port: u16,
    origin_port: u16,
    proxy_authorization: Option<&str>,
) -> Result<u16, String> {
    let mut conn = TcpStream::connect(("127.0.0.1", proxy_port)).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let auth = proxy_authorization
        .map(|v| format!("Proxy-Authorization: {v}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET http://127.0.0.1:{origin_port}/ HTTP/1.1\r\nHost: 127.0.0.1:{origin_port}\r\n{auth}Connection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    conn.read_to_end(&mut response).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))
}
