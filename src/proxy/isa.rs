//! The ISA scanner plugin (`ISAScannerSize` / `-S`, `ISAScannerAgent` / `-G`), as the CNTLM
//! man page describes it.
//!
//! Some corporate proxies (Microsoft ISA with an AV scanner such as GFI WebMonitor) answer a
//! download with an interim HTML page showing a progress bar while they fetch and scan the
//! file, and only at the end of that page give the link to the scanned copy. Browsers follow
//! it; `wget`, `apt`, `yum` save the HTML instead of the file. With the plugin on, cntlm
//! recognises the page, sends the client `HTTP/1.1 200 OK` at once and then one
//! `ISA-Scanner: <done> of <total>` header line per progress step (so the client does not
//! time out), fetches the file from the link on the same upstream connection and forwards it
//! with its own headers. Anything it cannot parse is forwarded unchanged: the page is never
//! lost.
//!
//! When it applies (man page): to every GET whose User-Agent matches an `ISAScannerAgent`
//! pattern (case-insensitive `*pattern*`, with `*`, `?`, `[]`), whatever the size; and, when
//! `ISAScannerSize` is set, to other GETs whose announced total is at most that many KiB (0:
//! no limit). `ISAScannerAgent` alone means matching User-Agents only.
//!
//! What counts as the interim page (the real pages vary; this is the shape we parse): a `200`
//! `text/html` response with, within its first `PEEK_LIMIT` bytes, a progress call: a script
//! call whose name contains `progress` or is `UpdatePage`, with two integers
//! (`UpdateProgress(1000, 10000)`: done, total). The link is the first quoted argument of a
//! later call whose name contains `finish` or `complete` (`DownloadFinished("/cache/f.bin")`),
//! absolute or relative to the requested URL.
//!
//! Limits: the page itself is held in memory up to `PAGE_LIMIT`; the file is fetched only on
//! the same upstream connection (when it stays open) and, DIRECT, only from the same origin.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;
use crate::http::body::{BodyKind, copy_body, response_body};
use crate::http::head::{RequestHead, ResponseHead};
use crate::http::headers::UpgradePolicy;
use crate::proxy::handshake::{read_final, response_keeps_alive};
use crate::proxy::relay::{Ctx, Via};
use crate::proxy::session::{Client, Next, RequestLog};
use crate::proxy::target::Target;
use crate::upstream::UpstreamConn;

/// How much of a response body is looked at for a progress call before it is streamed on.
const PEEK_LIMIT: usize = 16 * 1024;
/// How long a quiet body is waited for while peeking: a scanner sends its page head and first
/// progress step at once, and an ordinary slow page should not wait the whole idle timeout.
const PEEK_QUIET: Duration = Duration::from_secs(5);
/// Largest interim page held (they are a few KiB plus one line per progress step).
const PAGE_LIMIT: usize = 4 * 1024 * 1024;

/// A GET the plugin may intercept, decided before it is sent.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The User-Agent matched: intercept whatever the size.
    forced: bool,
    /// Else, the largest total (bytes) to intercept; `None`: no limit.
    limit: Option<u64>,
    /// The request as sent upstream (headers reused for the file's request).
    request: RequestHead,
    /// The absolute URL asked for (relative links resolve against it).
    url: Target,
}

/// Whether the plugin may intercept `request` (already rewritten for upstream) for `url`.
pub fn candidate(config: &Config, request: &RequestHead, url: &Target) -> Option<Candidate> {
    if !request.method.eq_ignore_ascii_case("GET")
        || (config.isa_scanner_size.is_none() && config.isa_scanner_agents.is_empty())
    {
        return None;
    }
    let agent = request
        .headers
        .get("user-agent")
        .map(|v| String::from_utf8_lossy(v).to_lowercase())
        .unwrap_or_default();
    let forced = config.isa_scanner_agents.iter().any(|p| {
        glob(
            format!("*{}*", p.to_lowercase()).as_bytes(),
            agent.as_bytes(),
        )
    });
    let limit = match (forced, config.isa_scanner_size) {
        (true, _) | (false, Some(0)) => None,
        (false, Some(kib)) => Some(kib.saturating_mul(1024)),
        (false, None) => return None,
    };
    Some(Candidate {
        forced,
        limit,
        request: request.clone(),
        url: url.clone(),
    })
}

/// Shell-style match (`*`, `?`, `[set]`, `[!set]`), as CNTLM's `fnmatch` on the User-Agent.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((b'[', rest)) => {
            let Some(end) = rest.iter().skip(1).position(|&b| b == b']').map(|p| p + 1) else {
                return text.first() == Some(&b'[') && glob(rest, &text[1..]);
            };
            let (set, negate) = match rest[..end].split_first() {
                Some((b'!', set)) => (set, true),
                _ => (&rest[..end], false),
            };
            let Some(&c) = text.first() else {
                return false;
            };
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == b'-' {
                    hit |= set[i] <= c && c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            hit != negate && glob(&rest[end + 1..], &text[1..])
        }
        Some((&p, rest)) => text.first() == Some(&p) && glob(rest, &text[1..]),
    }
}

/// What the page says so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageScan {
    /// The latest progress call: (done, total).
    pub progress: Option<(u64, u64)>,
    /// Every progress call, in order.
    pub steps: Vec<(u64, u64)>,
    /// The link to the scanned file, once the page gave it.
    pub link: Option<String>,
}

/// Reads the progress calls and the final link out of (part of) an interim page.
pub fn scan(page: &[u8]) -> PageScan {
    let text = String::from_utf8_lossy(page);
    let mut out = PageScan::default();
    let bytes = text.as_bytes();
    for (open, _) in text.match_indices('(') {
        let start = bytes[..open]
            .iter()
            .rposition(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
            .map_or(0, |p| p + 1);
        let name = text[start..open].to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        let args = &text[open + 1..];
        let args = &args[..args.find(')').unwrap_or(args.len())];
        if name.contains("progress") || name == "updatepage" {
            let mut numbers = args.split(',').map(|a| a.trim().parse::<u64>());
            if let (Some(Ok(done)), Some(Ok(total))) = (numbers.next(), numbers.next()) {
                out.steps.push((done, total));
                out.progress = Some((done, total));
            }
        } else if (name.contains("finish") || name.contains("complete")) && out.link.is_none() {
            let arg = args.trim_start();
            if let Some(quote) = arg.chars().next().filter(|c| *c == '"' || *c == '\'')
                && let Some(end) = arg[1..].find(quote)
                && end > 0
            {
                out.link = Some(arg[1..=end].to_string());
            }
        }
    }
    out
}

/// The payload of a body as framed on the wire (`copy_body` relays chunked framing as is), for
/// scanning only: a chunked body is de-chunked leniently, stopping at anything malformed.
fn payload(kind: BodyKind, raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if kind != BodyKind::Chunked {
        return std::borrow::Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .map(|line| line.split(';').next().unwrap_or_default().trim())
            .and_then(|hex| usize::from_str_radix(hex, 16).ok());
        let Some(size) = size.filter(|&n| n > 0) else {
            break;
        };
        let data = &rest[eol + 2..];
        let take = size.min(data.len());
        out.extend_from_slice(&data[..take]);
        rest = data.get(take + 2..).unwrap_or_default();
    }
    std::borrow::Cow::Owned(out)
}

/// Whether `resp` is worth a look (a 200 HTML answer).
fn is_html_200(resp: &ResponseHead) -> bool {
    resp.status == 200
        && resp
            .headers
            .get("content-type")
            .is_some_and(|v| v.len() >= 9 && v[..9].eq_ignore_ascii_case(b"text/html"))
}

/// Whether the raw body bytes in `buf` already hold the whole body.
fn body_complete(kind: BodyKind, buf: &[u8]) -> bool {
    match kind {
        BodyKind::None => true,
        BodyKind::Length(n) => buf.len() as u64 >= n,
        BodyKind::Chunked => buf.ends_with(b"0\r\n\r\n"),
        BodyKind::UntilClose => false,
    }
}

/// Reads body bytes into `up.buf` (unconsumed, so a relay afterwards sends them as usual)
/// until a progress call shows up, `PEEK_LIMIT` is reached, the body ends or nothing comes.
async fn peek(up: &mut UpstreamConn, kind: BodyKind, idle: Duration) -> Option<(u64, u64)> {
    loop {
        if let Some(progress) = scan(&payload(kind, &up.buf)).progress {
            return Some(progress);
        }
        if up.buf.len() >= PEEK_LIMIT || body_complete(kind, &up.buf) {
            return None;
        }
        match tokio::time::timeout(idle.min(PEEK_QUIET), up.stream.read_buf(&mut up.buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
    }
}

/// How an interception ended.
#[derive(Debug)]
pub enum Intercept {
    /// Not an interim page (or not for us): relay `resp` as usual; peeked bytes are in
    /// `up.buf`.
    NotScanner,
    /// The client got its answer (the file, or the page unchanged).
    Done(Next),
}

/// Looks at a response to a candidate request and, if it is the scanner's interim page,
/// answers the client with the scanned file (see the module documentation).
#[allow(clippy::too_many_arguments)]
pub async fn intercept(
    candidate: &Candidate,
    ctx: &Ctx,
    client: &mut Client,
    up: &mut UpstreamConn,
    resp: &ResponseHead,
    via: Via,
    config: &Config,
    log: &mut RequestLog,
) -> Intercept {
    if !is_html_200(resp) {
        return Intercept::NotScanner;
    }
    let Ok(kind) = response_body("GET", resp) else {
        return Intercept::NotScanner;
    };
    let idle = config.limits.parent_first_byte;
    let Some((_, total)) = peek(up, kind, idle).await else {
        return Intercept::NotScanner;
    };
    if !candidate.forced && candidate.limit.is_some_and(|limit| total > limit) {
        tracing::debug!(
            total,
            "ISA scanner page for a download over ISAScannerSize: forwarded"
        );
        return Intercept::NotScanner;
    }
    tracing::info!(url = %crate::proxy::target::without_userinfo(&candidate.request.target), total, "ISA scanner page: waiting for the scanned file");
    log.status = 200;
    if !send(client, b"HTTP/1.1 200 OK\r\n", idle).await {
        return Intercept::Done(Next::Close);
    }
    let Some(page) = read_page(up, kind, idle, client).await else {
        return Intercept::Done(Next::Close);
    };
    let keep_up = response_keeps_alive(resp) && kind != BodyKind::UntilClose;
    let link = scan(&payload(kind, &page)).link;
    let fetched = match link {
        Some(link) if keep_up => fetch_file(candidate, up, &link, via, config).await,
        _ => None,
    };
    let next = match fetched {
        Some(file) => forward_file(ctx, client, up, file, idle, log).await,
        None => {
            tracing::info!("ISA scanner page without a usable link: forwarded unchanged");
            forward_page(ctx, client, (resp, kind), &page, idle, log).await
        }
    };
    Intercept::Done(next)
}

/// Reads the whole page, sending an `ISA-Scanner` header line per progress step meanwhile.
async fn read_page(
    up: &mut UpstreamConn,
    kind: BodyKind,
    idle: Duration,
    client: &mut Client,
) -> Option<Vec<u8>> {
    let (mut page_rd, mut page_wr) = tokio::io::duplex(64 * 1024);
    let copy = async {
        let copied = copy_body(&mut up.stream, &mut up.buf, &mut page_wr, kind, idle).await;
        drop(page_wr);
        copied
    };
    let watch = async {
        let mut page = Vec::new();
        let mut reported = 0;
        let mut chunk = BytesMut::with_capacity(16 * 1024);
        loop {
            chunk.clear();
            match page_rd.read_buf(&mut chunk).await {
                Ok(0) => return Some(page),
                Ok(_) => page.extend_from_slice(&chunk),
                Err(_) => return None,
            }
            if page.len() > PAGE_LIMIT {
                return None;
            }
            let steps = scan(&payload(kind, &page)).steps;
            for (done, total) in steps.iter().skip(reported) {
                let line = format!("ISA-Scanner: {done} of {total}\r\n");
                if !send(client, line.as_bytes(), idle).await {
                    return None;
                }
            }
            reported = reported.max(steps.len());
        }
    };
    let (copied, page) = tokio::join!(copy, watch);
    copied.ok()?;
    page
}

/// Asks for the scanned file on the same upstream connection; its head when it is a 200.
async fn fetch_file(
    candidate: &Candidate,
    up: &mut UpstreamConn,
    link: &str,
    via: Via,
    config: &Config,
) -> Option<ResponseHead> {
    let url = resolve(&candidate.url, link)?;
    let mut head = candidate.request.clone();
    head.headers.remove("content-length");
    head.headers.remove("transfer-encoding");
    head.headers.set("Host", url.authority.as_bytes());
    // The link comes from a page the parent served: the client's credentials for the site
    // it asked for never go to another host named there.
    let same_origin =
        url.host.eq_ignore_ascii_case(&candidate.url.host) && url.port == candidate.url.port;
    if !same_origin {
        head.headers.remove("authorization");
        head.headers.remove("cookie");
    }
    head.target = match via {
        Via::Parent => {
            head.headers.set("Proxy-Connection", "keep-alive");
            format!("{}://{}{}", url.scheme, url.authority, url.path)
        }
        // DIRECT, the connection leads to the requested origin only.
        Via::Direct => {
            if !same_origin {
                return None;
            }
            url.path.clone()
        }
    };
    up.stream.write_all(&head.to_bytes()).await.ok()?;
    let resp = read_final(up, &config.limits, "ISA scanner").await.ok()?;
    (resp.status == 200).then_some(resp)
}

/// `link` as an absolute URL: as is, or relative to `base`.
fn resolve(base: &Target, link: &str) -> Option<Target> {
    let link = link.trim().replace("&amp;", "&");
    if link.contains("://") {
        return Target::parse_absolute(&link);
    }
    let path = if link.starts_with('/') {
        link
    } else {
        let dir = base.path.split('?').next().unwrap_or("/");
        let dir = &dir[..dir.rfind('/').map_or(0, |i| i + 1)];
        format!("{dir}{link}")
    };
    Target::parse_absolute(&format!("{}://{}{}", base.scheme, base.authority, path))
}

/// The rest of the file's head (its status line is already out) and its body.
/// Writes `bytes` to the client, giving up after `idle` (a client that stopped reading must
/// not pin the session).
async fn send(client: &mut Client, bytes: &[u8], idle: Duration) -> bool {
    matches!(
        tokio::time::timeout(idle, client.stream.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

async fn forward_file(
    ctx: &Ctx,
    client: &mut Client,
    up: &mut UpstreamConn,
    file: ResponseHead,
    idle: Duration,
    log: &mut RequestLog,
) -> Next {
    let Ok(kind) = response_body("GET", &file) else {
        return Next::Close;
    };
    let keep = ctx.client_keep && kind != BodyKind::UntilClose;
    let mut head = file;
    head.headers.strip_hop_by_hop(UpgradePolicy::Strip);
    if !keep {
        head.headers.push("Connection", "close");
    }
    let mut out = Vec::new();
    head.headers.write_to(&mut out);
    out.extend_from_slice(b"\r\n");
    if !send(client, &out, idle).await {
        return Next::Close;
    }
    match copy_body(&mut up.stream, &mut up.buf, &mut client.stream, kind, idle).await {
        Ok(n) => log.bytes = n,
        Err(_) => return Next::Close,
    }
    if keep { Next::KeepAlive } else { Next::Close }
}

/// The interim page as the parent sent it: its own headers and framing (`page` holds the
/// body as framed on the wire; a close-delimited one gets a length).
async fn forward_page(
    ctx: &Ctx,
    client: &mut Client,
    (resp, kind): (&ResponseHead, BodyKind),
    page: &[u8],
    idle: Duration,
    log: &mut RequestLog,
) -> Next {
    let mut head = resp.clone();
    head.headers.strip_hop_by_hop(UpgradePolicy::Strip);
    if kind != BodyKind::Chunked {
        head.headers.remove("transfer-encoding");
        head.headers.set("Content-Length", page.len().to_string());
    }
    if !ctx.client_keep {
        head.headers.push("Connection", "close");
    }
    let mut out = Vec::new();
    head.headers.write_to(&mut out);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(page);
    if !send(client, &out, idle).await {
        return Next::Close;
    }
    log.bytes = page.len() as u64;
    if ctx.client_keep {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_is_shell_style() {
        assert!(glob(b"*wget*", b"wget/1.21.3"));
        assert!(glob(b"*apt-http*", b"debian apt-http/1.3 (2.6.1)"));
        assert!(!glob(b"*yum*", b"curl/8.0"));
        assert!(glob(b"*w?et*", b"wget"));
        assert!(glob(b"*[wc]url*", b"wurl"));
        assert!(glob(b"*[a-c]url*", b"curl/8"));
        assert!(!glob(b"*[!c]url", b"curl"));
    }

    #[test]
    fn page_progress_and_link_are_read() {
        let page = b"<html><body><p>Please wait while the file is scanned</p>\
            <script>UpdateProgress(1000, 10000);</script>\
            <script>UpdateProgress( 2000 ,10000 );</script>\
            <script>DownloadFinished('/isa/cache?id=7&amp;f=file.bin');</script></body></html>";
        let s = scan(page);
        assert_eq!(s.steps, vec![(1000, 10000), (2000, 10000)]);
        assert_eq!(s.progress, Some((2000, 10000)));
        assert_eq!(s.link.as_deref(), Some("/isa/cache?id=7&amp;f=file.bin"));
        assert_eq!(
            scan(b"<html>function f(x) { return x; }</html>"),
            PageScan::default()
        );
        assert_eq!(scan(b"UpdatePage(5, 9)").progress, Some((5, 9)));
    }

    #[test]
    fn chunked_pages_are_scanned_across_chunk_boundaries() {
        let raw =
            b"10\r\n<script>Download\r\n17\r\nFinished('/c/f.bin')</s\r\n3;x=1\r\ncri\r\n0\r\n\r\n";
        let text = payload(BodyKind::Chunked, raw);
        assert_eq!(&text[..], b"<script>DownloadFinished('/c/f.bin')</scri");
        assert_eq!(scan(&text).link.as_deref(), Some("/c/f.bin"));
        assert_eq!(&payload(BodyKind::Chunked, b"zz\r\nabc")[..], b"");
    }

    #[test]
    fn links_resolve_against_the_requested_url() {
        let base =
            Target::parse_absolute("http://files.example:8080/pub/a/file.iso?x=1").expect("valid");
        let abs = resolve(&base, "http://isa.corp/cache/1").expect("absolute");
        assert_eq!(
            (abs.host.as_str(), abs.path.as_str()),
            ("isa.corp", "/cache/1")
        );
        let root = resolve(&base, "/cache?id=1&amp;n=2").expect("rooted");
        assert_eq!(root.authority, "files.example:8080");
        assert_eq!(root.path, "/cache?id=1&n=2");
        let rel = resolve(&base, "scanned.iso").expect("relative");
        assert_eq!(rel.path, "/pub/a/scanned.iso");
    }

    fn config(size: Option<u64>, agents: &[&str]) -> Config {
        Config {
            isa_scanner_size: size,
            isa_scanner_agents: agents.iter().map(ToString::to_string).collect(),
            ..Config::default()
        }
    }

    fn get(agent: &str) -> RequestHead {
        let mut headers = crate::http::Headers::default();
        headers.push("User-Agent", agent);
        RequestHead {
            method: "GET".into(),
            target: "http://h/f".into(),
            version: crate::http::Version::Http11,
            headers,
        }
    }

    #[test]
    fn who_is_a_candidate_follows_the_man_page() {
        let url = Target::parse_absolute("http://h/f").expect("valid");
        let agents_only = config(None, &["wget"]);
        let c = candidate(&agents_only, &get("Wget/1.21"), &url).expect("matching agent");
        assert!(c.forced);
        assert!(candidate(&agents_only, &get("curl/8"), &url).is_none());
        let sized = config(Some(2), &["wget"]);
        let c = candidate(&sized, &get("curl/8"), &url).expect("size applies");
        assert_eq!((c.forced, c.limit), (false, Some(2048)));
        let unlimited = config(Some(0), &[]);
        assert_eq!(
            candidate(&unlimited, &get("curl/8"), &url).map(|c| c.limit),
            Some(None)
        );
        assert!(candidate(&config(None, &[]), &get("Wget"), &url).is_none());
        let mut post = get("Wget");
        post.method = "POST".into();
        assert!(candidate(&agents_only, &post, &url).is_none());
    }
}
