//! The lab's origin servers: `tests/lab/origin.py` started under Debian's Python, reporting
//! its OS-assigned ports on its first stdout line (so there is no port race). Part of `lab.rs`.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;

use super::{ChildGuard, START_TIMEOUT, SYSTEM_PYTHON, lab_script, read_lossy};

// ------------------------------------------------------------------------------------------

/// The lab's origin servers (`tests/lab/origin.py`): HTTP and HTTPS with `/echo`,
/// `/bytes/<n>`, `/chunked/<n>`, `/close/<n>`, git smart HTTP under `/git/lab.git` and a pip
/// index under `/simple/`.
pub struct Origin {
    /// The plain-HTTP port on 127.0.0.1.
    pub http_port: u16,
    /// The HTTPS port on 127.0.0.1 (self-signed, see `cert`).
    pub https_port: u16,
    /// PEM certificate of the HTTPS origin (for `curl --cacert`).
    pub cert: PathBuf,
    /// File name of the wheel the pip index serves.
    pub wheel: String,
    /// SHA-256 of that wheel.
    pub wheel_sha256: String,
    /// Commit id of `lab.git`'s HEAD.
    pub git_head: String,
    guard: ChildGuard,
    dir: tempfile::TempDir,
}

impl Origin {
    /// Starts the origin process and waits for its ready line.
    pub fn start() -> Origin {
        let dir = tempfile::Builder::new()
            .prefix("cntlm-lab-origin")
            .tempdir()
            .expect("temp dir");
        let log = dir.path().join("origin.err");
        let child = Command::new(SYSTEM_PYTHON)
            .arg(lab_script("origin.py"))
            .arg("--dir")
            .arg(dir.path())
            // Our end of stdin stays open while the guard lives; the origin also stops if we die.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).expect("create origin log"))
            .spawn()
            .expect("start tests/lab/origin.py under /usr/bin/python3");
        let mut guard = ChildGuard::new("origin.py", child);
        let stdout = guard.stdout().expect("origin stdout was piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(START_TIMEOUT).unwrap_or_else(|_| {
            panic!(
                "origin.py did not report its ports; log:\n{}",
                read_lossy(&log)
            )
        });
        let ready: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "origin.py ready line {line:?}: {e}; log:\n{}",
                read_lossy(&log)
            )
        });
        let port = |key: &str| -> u16 {
            ready[key]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .expect("origin reports ports")
        };
        let text = |key: &str| {
            ready[key]
                .as_str()
                .expect("origin reports text fields")
                .to_string()
        };
        Origin {
            http_port: port("http"),
            https_port: port("https"),
            cert: PathBuf::from(text("cert")),
            wheel: text("wheel"),
            wheel_sha256: text("wheel_sha256"),
            git_head: text("git_head"),
            guard,
            dir,
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https_port)
    }

    /// The smart-HTTP URL of the lab's git repository.
    pub fn git_url(&self) -> String {
        self.http_url("/git/lab.git")
    }

    /// The PEP 503 index URL.
    pub fn pip_index_url(&self) -> String {
        self.http_url("/simple/")
    }
}
