//! `GET http://<listen>/proxy.pac` (issue 6 §3): the PAC that sends everything through this
//! cntlm (`PROXY <us>; DIRECT`), for clients that only take a PAC URL.
//!
//! Such a request names us, so it would otherwise hit the loop guard; it is answered here
//! before that check, in origin form (`GET /proxy.pac`, a client fetching the PAC from us as
//! a web server) and in absolute form (`GET http://127.0.0.1:3128/proxy.pac` sent as a proxy
//! request).

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;

use crate::http::body::{BodyKind, request_body};
use crate::http::head::RequestHead;
use crate::pac::served_pac;
use crate::proxy::Shared;
use crate::proxy::session::{Client, Next, RequestLog, client_keeps_alive};
use crate::proxy::target::{Target, names_us, split_host_port};

/// The path the served PAC lives at.
pub const PAC_PATH: &str = "/proxy.pac";
/// The media type browsers expect for a PAC (the Netscape note's).
pub const PAC_CONTENT_TYPE: &str = "application/x-ns-proxy-autoconfig";

/// Whether `req` asks for our served PAC.
pub fn is_pac_request(req: &RequestHead, listening: &[SocketAddr]) -> bool {
    if !(req.method.eq_ignore_ascii_case("GET") || req.method.eq_ignore_ascii_case("HEAD")) {
        return false;
    }
    let path_is_pac = |path: &str| path.split('?').next() == Some(PAC_PATH);
    if req.target.starts_with('/') {
        return path_is_pac(&req.target);
    }
    Target::parse_absolute(&req.target).is_some_and(|t| {
        t.scheme == "http" && names_us(&t.host, t.port, listening) && path_is_pac(&t.path)
    })
}

/// The `host:port` clients should use to reach us: the one this request came in on when it
/// names us, else our first listen address that is not a wildcard.
fn our_authority(req: &RequestHead, listening: &[SocketAddr]) -> String {
    let asked = Target::parse_absolute(&req.target)
        .map(|t| t.authority)
        .or_else(|| {
            req.headers
                .get("host")
                .and_then(|h| std::str::from_utf8(h).ok())
                .map(str::to_string)
        });
    if let Some(asked) = &asked
        && let Some((host, port)) = split_host_port(asked, Some(80))
        && names_us(&host, port, listening)
    {
        return asked.clone();
    }
    listening
        .iter()
        .find(|a| !a.ip().is_unspecified())
        .map(ToString::to_string)
        .or(asked)
        .unwrap_or_else(|| "127.0.0.1:3128".to_string())
}

/// Answers with the served PAC.
pub async fn serve(
    shared: &Shared,
    client: &mut Client,
    req: &RequestHead,
    log: &mut RequestLog,
) -> Next {
    let body = served_pac(&our_authority(req, &shared.listening));
    // A body on a GET is legal but meaningless here; we do not read it, so we close after.
    let keep = client_keeps_alive(req.version, &req.headers)
        && matches!(request_body(req), Ok(BodyKind::None));
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {PAC_CONTENT_TYPE}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: {}\r\n\r\n",
        body.len(),
        if keep { "keep-alive" } else { "close" }
    );
    let mut out = head.into_bytes();
    if !req.method.eq_ignore_ascii_case("HEAD") {
        out.extend_from_slice(body.as_bytes());
    }
    log.status = 200;
    log.via = "served PAC".to_string();
    log.bytes = body.len() as u64;
    if client.stream.write_all(&out).await.is_err() {
        return Next::Close;
    }
    if keep { Next::KeepAlive } else { Next::Close }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> RequestHead {
        let limits = crate::http::head::HeadLimits::from(&crate::config::Limits::default());
        RequestHead::parse(raw.as_bytes(), &limits)
            .expect("parse")
            .expect("complete head")
            .0
    }

    #[test]
    fn origin_and_absolute_form_to_us_only() {
        let us: Vec<SocketAddr> = vec!["127.0.0.1:3128".parse().expect("addr")];
        assert!(is_pac_request(
            &head("GET /proxy.pac HTTP/1.1\r\nHost: x\r\n\r\n"),
            &us
        ));
        assert!(is_pac_request(
            &head("GET http://127.0.0.1:3128/proxy.pac HTTP/1.1\r\n\r\n"),
            &us
        ));
        assert!(!is_pac_request(
            &head("GET http://example.com/proxy.pac HTTP/1.1\r\n\r\n"),
            &us
        ));
        assert!(!is_pac_request(
            &head("POST /proxy.pac HTTP/1.1\r\n\r\n"),
            &us
        ));
        assert!(!is_pac_request(&head("GET /other HTTP/1.1\r\n\r\n"), &us));
    }
}
