//! Loading the PAC script from a file or an `http://` URL, keeping the last good copy.
//!
//! A PAC URL is fetched DIRECT (never through a parent: the PAC is what tells us which parent
//! to use) with a minimal HTTP/1.1 GET (RFC 9112) and an overall timeout, following at most
//! [`MAX_REDIRECTS`] redirects. `https://` PAC URLs are reported unsupported for now: the
//! crate has no TLS client yet, and adding one only for this is left to the lead.
//!
//! The caller re-fetches every [`PAC_REFETCH_INTERVAL`] and on a network change through
//! [`PacLoader::refresh`]; a failed fetch keeps the last good script.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How often a PAC is re-fetched while cntlm runs (and on every network change).
pub const PAC_REFETCH_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Budget of one whole fetch, redirects included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest PAC accepted; corporate PACs are a few KiB, the biggest seen a few hundred.
pub const MAX_PAC_SIZE: usize = 1024 * 1024;
/// Redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 5;
/// Largest response head accepted.
const MAX_HEAD_SIZE: usize = 64 * 1024;

/// Why a PAC could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PacFetchError {
    /// `https://` and other schemes we do not speak.
    #[error("PAC URL scheme of {url:?} is not supported (use http:// or a file path)")]
    UnsupportedScheme {
        /// The URL as given.
        url: String,
    },
    /// The URL could not be parsed.
    #[error("bad PAC URL {url:?}")]
    BadUrl {
        /// The URL as given.
        url: String,
    },
    /// Reading the PAC file failed.
    #[error("cannot read PAC file {path}")]
    File {
        /// The path as given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Connecting to or talking with the PAC server failed.
    #[error("cannot fetch PAC from {url}")]
    Network {
        /// The URL being fetched.
        url: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The fetch took longer than its timeout.
    #[error("fetching PAC from {url} took longer than {timeout:?}")]
    Timeout {
        /// The URL first asked for.
        url: String,
        /// The budget.
        timeout: Duration,
    },
    /// The server answered with a status other than 200 (after redirects).
    #[error("PAC server answered {status} for {url}")]
    Status {
        /// The URL that answered.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// More than [`MAX_REDIRECTS`] redirects, or a redirect without a usable `Location`.
    #[error("PAC URL {url} redirects too often or to nowhere")]
    Redirect {
        /// The URL that redirected last.
        url: String,
    },
    /// The response (or file) is larger than [`MAX_PAC_SIZE`].
    #[error("PAC from {url} is larger than {MAX_PAC_SIZE} bytes")]
    TooLarge {
        /// Where it came from.
        url: String,
    },
    /// The response is not HTTP/1.x we can read.
    #[error("malformed HTTP response from PAC server {url}: {reason}")]
    Malformed {
        /// The URL being fetched.
        url: String,
        /// What was wrong.
        reason: &'static str,
    },
}

/// Where a PAC comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacSource {
    /// A local file (a plain path or a `file://` URL).
    File(PathBuf),
    /// An `http://` URL.
    Http(HttpUrl),
}

/// A parsed `http://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port (80 when absent).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.path)
    }
}

impl HttpUrl {
    /// Parses an absolute `http://` URL; the fragment is dropped, user info is refused.
    pub fn parse(url: &str) -> Result<HttpUrl, PacFetchError> {
        let bad = || PacFetchError::BadUrl {
            url: url.to_owned(),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(PacFetchError::UnsupportedScheme {
                url: url.to_owned(),
            });
        }
        let rest = rest.split('#').next().unwrap_or("");
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        if authority.contains('@') || path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(bad());
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(bad)?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let port = match port {
            None => 80,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().map_err(|_| bad())?
            }
            Some(_) => return Err(bad()),
        };
        let host_ok = !host.is_empty()
            && (host.parse::<std::net::Ipv6Addr>().is_ok()
                || host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
        if !host_ok {
            return Err(bad());
        }
        Ok(HttpUrl {
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// `host[:port]` for the `Host` header (RFC 9112 §3.2), brackets around IPv6.
    fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl PacSource {
    /// Reads the `Pac` / `-x` value: `http://` URL, `file://` URL or a path.
    pub fn parse(text: &str) -> Result<PacSource, PacFetchError> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("file://") {
            return Ok(PacSource::File(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            if scheme.eq_ignore_ascii_case("http") {
                return Ok(PacSource::Http(HttpUrl::parse(text)?));
            }
            return Err(PacFetchError::UnsupportedScheme {
                url: text.to_owned(),
            });
        }
        Ok(PacSource::File(PathBuf::from(text)))
    }
}

impl std::fmt::Display for PacSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PacSource::File(path) => write!(f, "{}", path.display()),
            PacSource::Http(url) => write!(f, "{url}"),
        }
    }
}

/// A PAC script as last loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedPac {
    /// The script text (UTF-8; other bytes replaced).
    pub script: String,
    /// When it was loaded (for `--route`'s "age").
    pub loaded_at: SystemTime,
    /// Where it finally came from (the last URL after redirects, or the path).
    pub origin: String,
}

/// Whether a refresh changed the script (and the engine must be rebuilt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// The script differs from the last good one (or is the first).
    Changed,
    /// Same script as before.
    Unchanged,
}

/// A PAC source and its last good copy.
#[derive(Debug)]
pub struct PacLoader {
    /// Where to load from.
    source: PacSource,
    /// Budget of one fetch.
    timeout: Duration,
    /// The last successfully loaded script; kept when a later fetch fails.
    last_good: Option<LoadedPac>,
}

impl PacLoader {
    /// A loader for `source` with the default [`FETCH_TIMEOUT`]; nothing is loaded yet.
    pub fn new(source: PacSource) -> PacLoader {
        PacLoader {
            source,
            timeout: FETCH_TIMEOUT,
            last_good: None,
        }
    }

    /// Overrides the per-fetch timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> PacLoader {
        self.timeout = timeout;
        self
    }

    /// Where this loader reads from.
    pub fn source(&self) -> &PacSource {
        &self.source
    }

    /// The last good script, if any load ever succeeded.
    pub fn last_good(&self) -> Option<&LoadedPac> {
        self.last_good.as_ref()
    }

    /// Loads the script again. On failure the last good copy stays in place and the error is
    /// returned for logging.
    pub async fn refresh(&mut self) -> Result<Refresh, PacFetchError> {
        let (script, origin) = load_pac(&self.source, self.timeout).await?;
        let changed = self
            .last_good
            .as_ref()
            .is_none_or(|old| old.script != script);
        self.last_good = Some(LoadedPac {
            script,
            loaded_at: SystemTime::now(),
            origin,
        });
        Ok(if changed {
            Refresh::Changed
        } else {
            Refresh::Unchanged
        })
    }
}

/// Loads a PAC once: returns the script and where it finally came from.
pub async fn load_pac(
    source: &PacSource,
    timeout: Duration,
) -> Result<(String, String), PacFetchError> {
    match source {
        PacSource::File(path) => {
            let owned = path.clone();
            // At most one byte past the limit: a huge file (or /dev/zero) is refused, not read.
            let read = tokio::task::spawn_blocking(move || {
                use std::io::Read;
                let mut bytes = Vec::new();
                std::fs::File::open(owned)?
                    .take(MAX_PAC_SIZE as u64 + 1)
                    .read_to_end(&mut bytes)?;
                Ok::<_, std::io::Error>(bytes)
            })
            .await
            .map_err(|e| PacFetchError::File {
                path: path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            let bytes = read.map_err(|source| PacFetchError::File {
                path: path.clone(),
                source,
            })?;
            if bytes.len() > MAX_PAC_SIZE {
                return Err(PacFetchError::TooLarge {
                    url: path.display().to_string(),
                });
            }
            let script = String::from_utf8_lossy(&bytes).into_owned();
            Ok((script, path.display().to_string()))
        }
        PacSource::Http(url) => tokio::time::timeout(timeout, fetch_following(url.clone()))
            .await
            .map_err(|_| PacFetchError::Timeout {
                url: url.to_string(),
                timeout,
            })?,
    }
}

/// GETs `url`, following redirects; returns the body and the final URL.
async fn fetch_following(mut url: HttpUrl) -> Result<(String, String), PacFetchError> {
    for _ in 0..=MAX_REDIRECTS {
        let response = http_get(&url).await?;
        match response.status {
            200 => {
                let script = String::from_utf8_lossy(&response.body).into_owned();
                return Ok((script, url.to_string()));
            }
            301 | 302 | 303 | 307 | 308 => {
                let redirect_error = || PacFetchError::Redirect {
                    url: url.to_string(),
                };
                let location = response.location.ok_or_else(redirect_error)?;
                url = if location.starts_with('/') {
                    HttpUrl {
                        path: location,
                        ..url
                    }
                } else if location.contains("://") {
                    HttpUrl::parse(&location)?
                } else {
                    return Err(redirect_error());
                };
            }
            status => {
                return Err(PacFetchError::Status {
                    url: url.to_string(),
                    status,
                });
            }
        }
    }
    Err(PacFetchError::Redirect {
        url: url.to_string(),
    })
}

/// A response as the fetcher needs it.
struct Response {
    status: u16,
    location: Option<String>,
    body: Vec<u8>,
}

/// One GET over a fresh direct connection, reading until the body's framing says it ended.
async fn http_get(url: &HttpUrl) -> Result<Response, PacFetchError> {
    let network = |source| PacFetchError::Network {
        url: url.to_string(),
        source,
    };
    let mut stream = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(network)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: cntlm/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.path,
        url.authority(),
        env!("CARGO_PKG_VERSION"),
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(network)?;
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await.map_err(network)?;
        let eof = n == 0;
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_PAC_SIZE + MAX_HEAD_SIZE {
            return Err(PacFetchError::TooLarge {
                url: url.to_string(),
            });
        }
        match parse_response(&buf, eof) {
            Ok(Some(response)) => return Ok(response),
            Ok(None) if !eof => continue,
            Ok(None) => {
                return Err(PacFetchError::Malformed {
                    url: url.to_string(),
                    reason: "connection closed before the response ended",
                });
            }
            Err(reason) => {
                return Err(PacFetchError::Malformed {
                    url: url.to_string(),
                    reason,
                });
            }
        }
    }
}

/// A complete response from `buf`, `None` when more bytes are needed. `eof` says the server
/// closed, which ends a body that has neither length nor chunking (RFC 9112 §6.3 rule 8).
fn parse_response(buf: &[u8], eof: bool) -> Result<Option<Response>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut head = httparse::Response::new(&mut headers);
    let head_len = match head.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_SIZE => {
            return Err("response head too large");
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("unparsable response head"),
    };
    let status = head.code.ok_or("no status code")?;
    let mut location = None;
    let mut content_length = None;
    let mut chunked = false;
    for h in head.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| "non-UTF-8 header value")?
            .trim();
        if h.name.eq_ignore_ascii_case("location") {
            location = Some(value.to_owned());
        } else if h.name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse::<usize>().map_err(|_| "bad Content-Length")?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().ends_with("chunked");
        }
    }
    let rest = &buf[head_len..];
    // RFC 9112 §6.3: chunked wins over Content-Length.
    let body = if chunked {
        match decode_chunked(rest)? {
            Some(body) => body,
            None => return Ok(None),
        }
    } else if let Some(len) = content_length {
        if len > MAX_PAC_SIZE {
            return Err("Content-Length larger than the PAC size limit");
        }
        if rest.len() < len {
            return Ok(None);
        }
        rest[..len].to_vec()
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else if eof {
        rest.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some(Response {
        status,
        location,
        body,
    }))
}

/// Decodes a complete chunked body (RFC 9112 §7.1); `None` while incomplete. Trailers are
/// skipped.
fn decode_chunked(mut rest: &[u8]) -> Result<Option<Vec<u8>>, &'static str> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&rest[..line_end]).map_err(|_| "bad chunk size")?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        if size > MAX_PAC_SIZE || body.len() + size > MAX_PAC_SIZE {
            return Err("chunked body larger than the PAC size limit");
        }
        rest = &rest[line_end + 2..];
        if size == 0 {
            // Trailer section: lines until an empty one.
            loop {
                let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                if end == 0 {
                    return Ok(Some(body));
                }
                rest = &rest[end + 2..];
            }
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        if &rest[size..size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF");
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
