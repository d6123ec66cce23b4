//! Logging to the local syslog daemon once detached: facility daemon, ident `cntlm`, RFC 3164
//! messages as datagrams on `/dev/log`, plugged into `tracing_subscriber::fmt` as its writer.
//!
//! Written here rather than taken from the `syslog` crate: what we need is one datagram per
//! event in glibc's local format, about sixty lines, while the crate brings its own logger
//! facade, TCP/UDP transports and a hostname lookup that cntlm has no use for.
//!
//! The message is `<PRI>Mmm dd hh:mm:ss cntlm[pid]: text`, without HOSTNAME, as syslog(3)
//! sends to the local socket. The timestamp is UTC because finding the local time zone
//! portably needs either unsafe libc calls or another crate; journald and rsyslog's imuxsock
//! stamp local messages with their own receive time by default anyway.

use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// RFC 3164 §4.1.1 facility 3, "system daemons".
const FACILITY_DAEMON: u8 = 3;
/// Longest message text sent; longer ones are cut (at a character boundary).
const MAX_MESSAGE: usize = 8 * 1024;

/// A connection to the local syslog daemon; cheap to clone, shared by every thread.
#[derive(Debug, Clone)]
pub struct Syslog {
    /// The socket and what goes in every message header.
    inner: Arc<SyslogInner>,
}

#[derive(Debug)]
struct SyslogInner {
    /// The syslog daemon's socket (`/dev/log`), reconnected when it restarts.
    path: PathBuf,
    /// The TAG of every message (`cntlm`).
    ident: String,
    /// Connected socket; `None` after a send failed until the next reconnect.
    socket: Mutex<Option<UnixDatagram>>,
}

impl Syslog {
    /// Connects to `/dev/log` with the ident `cntlm`.
    pub fn open_default() -> io::Result<Syslog> {
        Syslog::open("/dev/log", "cntlm")
    }

    /// Connects to the syslog socket at `path`; fails now when it is unreachable, so `main`
    /// can say so on the terminal before detaching from it.
    pub fn open(path: impl Into<PathBuf>, ident: &str) -> io::Result<Syslog> {
        let path = path.into();
        let socket = connect(&path)?;
        Ok(Syslog {
            inner: Arc::new(SyslogInner {
                path,
                ident: ident.to_owned(),
                socket: Mutex::new(Some(socket)),
            }),
        })
    }

    /// A `fmt` layer that writes every event to syslog: no ANSI colours, no timestamp (the
    /// header has one), no level text (the PRI carries the severity).
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + Send + Sync + 'static
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_subscriber::fmt::layer()
            .with_writer(self.clone())
            .with_ansi(false)
            .without_time()
            .with_level(false)
            .with_target(false)
    }

    /// Sends one message at `severity` (RFC 3164 §4.1.1: 3 err, 4 warning, 6 info, 7 debug).
    ///
    /// Never blocks: when the daemon's queue is full the message is dropped, because a
    /// proxy that stalls its worker threads on logging is worse than a lost log line. A
    /// restarted daemon is reconnected to once per message.
    pub fn send(&self, severity: u8, text: &str) {
        let message = format_message(
            FACILITY_DAEMON * 8 + severity,
            SystemTime::now(),
            &self.inner.ident,
            std::process::id(),
            text,
        );
        let mut guard = match self.inner.socket.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        for _ in 0..2 {
            if guard.is_none() {
                *guard = connect(&self.inner.path).ok();
            }
            let Some(socket) = guard.as_ref() else { return };
            match socket.send(&message) {
                Ok(_) => return,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // ECONNREFUSED/ENOTCONN: the daemon restarted and made a new socket.
                Err(_) => *guard = None,
            }
        }
    }
}

fn connect(path: &Path) -> io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    socket.connect(path)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// RFC 3164 §4.1.1 severity of a tracing level.
fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// `<PRI>Mmm dd hh:mm:ss ident[pid]: text` (RFC 3164 §4.1, without HOSTNAME as syslog(3)
/// sends locally). The trailing newline the fmt layer adds is not part of the message.
fn format_message(pri: u8, now: SystemTime, ident: &str, pid: u32, text: &str) -> Vec<u8> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (month, day) = month_day(secs / 86_400);
    let clock = secs % 86_400;
    let mut text = text.trim_end_matches(['\n', '\r']);
    if text.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text = &text[..cut];
    }
    // RFC 3164 §4.1.2: the day is space-padded to two characters ("Nov  5").
    format!(
        "<{pri}>{} {day:>2} {:02}:{:02}:{:02} {ident}[{pid}]: {text}",
        MONTHS[usize::from(month - 1)],
        clock / 3600,
        clock % 3600 / 60,
        clock % 60,
    )
    .into_bytes()
}

/// Month (1-12) and day of month of a day count since 1970-01-01 in the proleptic
/// Gregorian calendar (H. Hinnant's civil-from-days algorithm).
fn month_day(days: u64) -> (u8, u8) {
    let z = days + 719_468;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March = 0
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    (month as u8, day as u8)
}

/// One event being formatted; sent as one datagram when the fmt layer drops it.
#[derive(Debug)]
pub struct SyslogLine<'a> {
    /// Where the line goes.
    syslog: &'a Syslog,
    /// The event's RFC 3164 severity.
    severity: u8,
    /// The formatted event so far.
    buffer: Vec<u8>,
}

impl Write for SyslogLine<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine<'_> {
    fn drop(&mut self) {
        if !self.buffer.is_empty() {
            self.syslog
                .send(self.severity, &String::from_utf8_lossy(&self.buffer));
        }
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogLine<'a>;

    fn make_writer(&'a self) -> SyslogLine<'a> {
        SyslogLine {
            syslog: self,
            severity: severity(&Level::INFO),
            buffer: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SyslogLine<'a> {
        SyslogLine {
            syslog: self,
            severity: severity(meta.level()),
            buffer: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tracing_subscriber::layer::SubscriberExt;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn rfc3164_4_1_header_with_daemon_facility() {
        // 2026-11-25 15:04:05 UTC; daemon.info = 3 * 8 + 6 = 30.
        let msg = format_message(30, at(1_795_619_045), "cntlm", 4242, "listening on 3128\n");
        assert_eq!(
            String::from_utf8(msg).expect("ascii"),
            "<30>Nov 25 15:04:05 cntlm[4242]: listening on 3128"
        );
    }

    #[test]
    fn rfc3164_4_1_2_single_digit_days_are_space_padded() {
        // 2024-02-29 00:00:09 UTC (leap day), 2000-03-01, 1970-01-01.
        let msg = format_message(27, at(1_709_164_809), "cntlm", 1, "x");
        assert_eq!(msg, b"<27>Feb 29 00:00:09 cntlm[1]: x");
        let msg = format_message(31, at(951_868_800), "cntlm", 1, "x");
        assert_eq!(msg, b"<31>Mar  1 00:00:00 cntlm[1]: x");
        let msg = format_message(31, UNIX_EPOCH, "cntlm", 1, "x");
        assert_eq!(msg, b"<31>Jan  1 00:00:00 cntlm[1]: x");
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let text = "é".repeat(MAX_MESSAGE);
        let msg = format_message(30, UNIX_EPOCH, "cntlm", 1, &text);
        let msg = String::from_utf8(msg).expect("still valid UTF-8");
        let (_, body) = msg.split_once("]: ").expect("header");
        assert_eq!(
            body.len(),
            MAX_MESSAGE,
            "cut at the limit (2-byte chars fit exactly)"
        );
        assert!(body.chars().all(|c| c == 'é'));
    }

    fn bind(dir: &Path) -> (UnixDatagram, PathBuf) {
        let path = dir.join("log.sock");
        let server = UnixDatagram::bind(&path).expect("bind fake /dev/log");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        (server, path)
    }

    fn receive(server: &UnixDatagram) -> String {
        let mut buf = vec![0u8; 16 * 1024];
        let n = server.recv(&mut buf).expect("a datagram arrives");
        String::from_utf8(buf[..n].to_vec()).expect("utf-8")
    }

    #[test]
    fn tracing_events_arrive_as_one_datagram_each_with_their_severity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (server, path) = bind(dir.path());
        let syslog = Syslog::open(&path, "cntlm").expect("connects");
        let subscriber = tracing_subscriber::registry().with(syslog.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(port = 3128, "parent down");
            tracing::error!("cannot bind");
        });
        let pid = std::process::id();
        let first = receive(&server);
        assert!(first.starts_with("<28>"), "{first}");
        assert!(
            first.ends_with(&format!(" cntlm[{pid}]: parent down port=3128")),
            "{first}"
        );
        let second = receive(&server);
        assert!(second.starts_with("<27>"), "{second}");
        assert!(second.ends_with("]: cannot bind"), "{second}");
    }

    #[test]
    fn a_restarted_syslog_daemon_is_reconnected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (server, path) = bind(dir.path());
        let syslog = Syslog::open(&path, "cntlm").expect("connects");
        assert!(delivered(&syslog, &server, "before"));

        drop(server);
        std::fs::remove_file(&path).expect("old socket removed");
        let (server, _) = bind(dir.path());
        assert!(
            delivered(&syslog, &server, "after"),
            "a message reaches the new socket"
        );
    }

    /// Sends `text` until the server has it (a non-blocking send may drop a message under
    /// load, as a logger may; it must not keep writing into the dead socket).
    fn delivered(syslog: &Syslog, server: &UnixDatagram, text: &str) -> bool {
        server
            .set_read_timeout(Some(Duration::from_millis(250)))
            .expect("timeout");
        let mut buf = vec![0u8; 16 * 1024];
        (0..20).any(|_| {
            syslog.send(6, text);
            server
                .recv(&mut buf)
                .is_ok_and(|n| buf[..n].ends_with(format!("]: {text}").as_bytes()))
        })
    }

    #[test]
    fn an_unreachable_socket_fails_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(Syslog::open(dir.path().join("missing"), "cntlm").is_err());
    }
}
