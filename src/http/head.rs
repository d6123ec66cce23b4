//! Request and response heads: read from a socket under the limits of DESIGN.md §2, parsed
//! with `httparse`, and re-emitted with header case, order and duplicates preserved.
//!
//! "Not enough bytes yet" is `Ok(None)` from the parsers, not an error; the async readers
//! loop on it. Every error maps to the status a client is told (`HeadError::status`).

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::config::Limits;
use crate::http::headers::{Header, Headers};

/// The size limits a head is read under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Longest request (or status) line.
    pub line: usize,
    /// Longest single header line.
    pub field: usize,
    /// Largest whole head.
    pub head: usize,
    /// Most header fields.
    pub fields: usize,
}

impl From<&Limits> for HeadLimits {
    fn from(l: &Limits) -> Self {
        HeadLimits {
            line: l.request_line,
            field: l.header_field,
            head: l.head,
            fields: l.header_count,
        }
    }
}

impl HeadLimits {
    /// Limits for a parent's or origin's response head: one bound, the whole head (64 KiB).
    pub fn response(l: &Limits) -> Self {
        HeadLimits {
            line: l.head,
            field: l.head,
            head: l.head,
            fields: l.header_count.max(256),
        }
    }
}

/// Why a head could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The request line is over the limit (414).
    #[error("request line longer than {limit} bytes")]
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// One header line is over the limit (431).
    #[error("header field longer than {limit} bytes")]
    FieldTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// The whole head is over the limit (431).
    #[error("head larger than {limit} bytes")]
    HeadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Too many header fields (431).
    #[error("more than {limit} header fields")]
    TooManyFields {
        /// The limit.
        limit: usize,
    },
    /// Not a valid HTTP/1.x head (400).
    #[error("malformed head: {0}")]
    Malformed(&'static str),
    /// The peer closed before sending any byte of a head.
    #[error("connection closed")]
    Closed,
    /// The peer closed in the middle of a head.
    #[error("connection closed in the middle of a head")]
    Truncated,
    /// The head did not arrive in time (408 from a client, 504 from a parent).
    #[error("head not received in time")]
    Timeout,
    /// Reading failed.
    #[error("read failed")]
    Io(#[source] io::Error),
}

impl HeadError {
    /// The status a client gets for this error in its request head.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::LineTooLong { .. } => 414,
            HeadError::FieldTooLong { .. }
            | HeadError::HeadTooLarge { .. }
            | HeadError::TooManyFields { .. } => 431,
            HeadError::Timeout => 408,
            _ => 400,
        }
    }
}

/// The HTTP version of a message (httparse only accepts 1.0 and 1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    Http11,
}

impl Version {
    fn from_minor(minor: u8) -> Self {
        if minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        }
    }

    /// The version as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Method token, as received.
    pub method: String,
    /// Request target, as received (absolute-form, authority-form, origin-form or `*`).
    pub target: String,
    /// Protocol version.
    pub version: Version,
    /// Header fields in order.
    pub headers: Headers,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Protocol version.
    pub version: Version,
    /// Status code.
    pub status: u16,
    /// Reason phrase, as received (may be empty).
    pub reason: String,
    /// Header fields in order.
    pub headers: Headers,
}

fn collect(headers: &[httparse::Header<'_>]) -> Headers {
    Headers(
        headers
            .iter()
            .map(|h| Header {
                name: h.name.to_string(),
                value: h.value.to_vec(),
            })
            .collect(),
    )
}

/// Checks the limits on a (possibly partial) head: the first line, then every header line.
fn check_lines(buf: &[u8], limits: &HeadLimits) -> Result<(), HeadError> {
    let mut start = 0usize;
    let mut first = true;
    loop {
        let end = memchr::memchr(b'\n', &buf[start..]).map(|i| start + i);
        let len = end.unwrap_or(buf.len()) - start;
        if first && len > limits.line {
            return Err(HeadError::LineTooLong { limit: limits.line });
        }
        if !first && len > limits.field {
            return Err(HeadError::FieldTooLong {
                limit: limits.field,
            });
        }
        match end {
            Some(_) if len <= 1 && !first => return Ok(()), // the empty line ends the head
            Some(e) => start = e + 1,
            None => return Ok(()),
        }
        first = false;
    }
}

fn map_httparse(e: httparse::Error, limits: &HeadLimits) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooManyFields {
            limit: limits.fields,
        },
        httparse::Error::HeaderName => HeadError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => HeadError::Malformed("invalid byte in a header value"),
        httparse::Error::NewLine => HeadError::Malformed("invalid line ending"),
        httparse::Error::Status => HeadError::Malformed("invalid status"),
        httparse::Error::Token => HeadError::Malformed("invalid method or request target"),
        httparse::Error::Version => HeadError::Malformed("unsupported or invalid HTTP version"),
    }
}

/// httparse's verdict checked against the head size limit: `Some(consumed)` when the head
/// is complete, `None` when more bytes are needed (and may still fit).
fn complete_within(
    status: httparse::Status<usize>,
    buffered: usize,
    limits: &HeadLimits,
) -> Result<Option<usize>, HeadError> {
    let size = match status {
        httparse::Status::Partial => buffered,
        httparse::Status::Complete(n) => n,
    };
    if size > limits.head {
        return Err(HeadError::HeadTooLarge { limit: limits.head });
    }
    Ok(match status {
        httparse::Status::Partial => None,
        httparse::Status::Complete(n) => Some(n),
    })
}

impl RequestHead {
    /// Parses a request head at the start of `buf`: `Ok(Some((head, consumed)))` when it is
    /// complete, `Ok(None)` when more bytes are needed.
    pub fn parse(buf: &[u8], limits: &HeadLimits) -> Result<Option<(Self, usize)>, HeadError> {
        check_lines(buf, limits)?;
        let mut fields = vec![httparse::EMPTY_HEADER; limits.fields];
        let mut req = httparse::Request::new(&mut fields);
        let status = req.parse(buf).map_err(|e| map_httparse(e, limits))?;
        let Some(n) = complete_within(status, buf.len(), limits)? else {
            return Ok(None);
        };
        let head = RequestHead {
            method: req.method.unwrap_or_default().to_string(),
            target: req.path.unwrap_or_default().to_string(),
            version: Version::from_minor(req.version.unwrap_or(1)),
            headers: collect(req.headers),
        };
        Ok(Some((head, n)))
    }

    /// Writes the head: request line, fields in order, empty line.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.target.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.version.as_str().as_bytes());
        out.extend_from_slice(b"\r\n");
        self.headers.write_to(out);
        out.extend_from_slice(b"\r\n");
    }

    /// The head as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_to(&mut out);
        out
    }
}

impl ResponseHead {
    /// Parses a response head at the start of `buf` (see `RequestHead::parse`).
    pub fn parse(buf: &[u8], limits: &HeadLimits) -> Result<Option<(Self, usize)>, HeadError> {
        let mut fields = vec![httparse::EMPTY_HEADER; limits.fields];
        let mut resp = httparse::Response::new(&mut fields);
        let status = resp.parse(buf).map_err(|e| map_httparse(e, limits))?;
        let Some(n) = complete_within(status, buf.len(), limits)? else {
            return Ok(None);
        };
        let head = ResponseHead {
            version: Version::from_minor(resp.version.unwrap_or(1)),
            status: resp.code.unwrap_or(0),
            reason: resp.reason.unwrap_or_default().to_string(),
            headers: collect(resp.headers),
        };
        if !(100..=999).contains(&head.status) {
            return Err(HeadError::Malformed("invalid status"));
        }
        Ok(Some((head, n)))
    }

    /// Writes the head: status line, fields in order, empty line.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.version.as_str().as_bytes());
        out.extend_from_slice(format!(" {} ", self.status).as_bytes());
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        self.headers.write_to(out);
        out.extend_from_slice(b"\r\n");
    }

    /// The head as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_to(&mut out);
        out
    }

    /// Whether this is an interim (1xx) response.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status)
    }
}

/// A head parser: `RequestHead::parse` or `ResponseHead::parse`.
type ParseFn<T> = fn(&[u8], &HeadLimits) -> Result<Option<(T, usize)>, HeadError>;

/// Reads until `parse` yields a head, consuming its bytes from `buf`; later bytes (a body,
/// a pipelined request) stay in `buf`. `idle` bounds each wait for more bytes.
async fn read_head<R, T>(
    io: &mut R,
    buf: &mut BytesMut,
    limits: &HeadLimits,
    idle: Option<Duration>,
    parse: ParseFn<T>,
) -> Result<T, HeadError>
where
    R: AsyncRead + Unpin,
{
    loop {
        if !buf.is_empty()
            && let Some((head, n)) = parse(buf, limits)?
        {
            buf.advance(n);
            return Ok(head);
        }
        // 4 KiB at a time: most heads fit in one read, and each of thousands of connections
        // (tunnels opening at once) holds this buffer until its head is parsed.
        buf.reserve(4 * 1024);
        let read = io.read_buf(buf);
        let n = match idle {
            Some(d) => tokio::time::timeout(d, read)
                .await
                .map_err(|_| HeadError::Timeout)?,
            None => read.await,
        }
        .map_err(HeadError::Io)?;
        if n == 0 {
            return Err(if buf.is_empty() {
                HeadError::Closed
            } else {
                HeadError::Truncated
            });
        }
    }
}

/// Reads a request head (the caller bounds the total time: the header deadline).
pub async fn read_request<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    limits: &HeadLimits,
) -> Result<RequestHead, HeadError> {
    read_head(io, buf, limits, None, RequestHead::parse).await
}

/// Reads a response head, waiting at most `idle` for each read.
pub async fn read_response<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    limits: &HeadLimits,
    idle: Option<Duration>,
) -> Result<ResponseHead, HeadError> {
    read_head(io, buf, limits, idle, ResponseHead::parse).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HeadLimits {
        HeadLimits::from(&Limits::default())
    }

    fn parse(raw: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
        RequestHead::parse(raw, &limits())
    }

    #[test]
    fn re_emits_case_order_and_duplicates() {
        let raw = b"GET http://h/a?b={x}`\"q\" HTTP/1.1\r\nHost: h\r\nX-a: 1\r\nx-A: 2\r\nACCEPT: */*\r\n\r\n";
        let (head, n) = parse(raw).expect("valid").expect("complete");
        assert_eq!(n, raw.len());
        assert_eq!(head.to_bytes(), raw.to_vec());
    }

    #[test]
    fn partial_head_needs_more() {
        assert!(
            parse(b"GET http://h/ HTTP/1.1\r\nHost: h\r\n")
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn limits_map_to_414_and_431() {
        let long_line = format!("GET http://h/{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
        assert_eq!(
            parse(long_line.as_bytes()).err().map(|e| e.status()),
            Some(414)
        );
        let partial_long_line = format!("GET http://h/{}", "a".repeat(9000));
        assert_eq!(
            parse(partial_long_line.as_bytes())
                .err()
                .map(|e| e.status()),
            Some(414)
        );
        let long_field = format!("GET http://h/ HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        assert_eq!(
            parse(long_field.as_bytes()).err().map(|e| e.status()),
            Some(431)
        );
        let many = format!("GET http://h/ HTTP/1.1\r\n{}\r\n", "X: 1\r\n".repeat(101));
        assert_eq!(parse(many.as_bytes()).err().map(|e| e.status()), Some(431));
        let big = format!(
            "GET http://h/ HTTP/1.1\r\n{}",
            format!("X: {}\r\n", "a".repeat(8000)).repeat(9)
        );
        assert_eq!(parse(big.as_bytes()).err().map(|e| e.status()), Some(431));
    }

    #[test]
    fn malformed_heads_are_400() {
        for raw in [
            &b"GET http://h/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n"[..],
            b"GET http://h/ HTTP/1.1\r\nX : a\r\n\r\n",
            b"GET http://h/ HTTP/1.1\r\nNoColon\r\n\r\n",
            b"GET http://h/ HTTP/1.1\r\n: v\r\n\r\n",
            b"GET http://h/ HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            b"GET http://h/ HTTP/1.1\r\nX: a\rb\r\n\r\n",
            b"GET http://h/ HTTP/2.0\r\n\r\n",
            b"G(T http://h/ HTTP/1.1\r\n\r\n",
            b"GET http://h/\r\n\r\n",
        ] {
            let err = parse(raw).err();
            assert_eq!(
                err.as_ref().map(|e| e.status()),
                Some(400),
                "{:?} gave {err:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[tokio::test]
    async fn head_split_across_reads_leaves_body_in_buffer() {
        let mut io = tokio_test::io::Builder::new()
            .read(b"POST http://h/ HT")
            .read(b"TP/1.1\r\nContent-Length: 3\r")
            .read(b"\n\r\nab")
            .build();
        let mut buf = BytesMut::new();
        let head = read_request(&mut io, &mut buf, &limits())
            .await
            .expect("head");
        assert_eq!(head.method, "POST");
        assert_eq!(head.headers.get("content-length"), Some(&b"3"[..]));
        assert_eq!(&buf[..], b"ab");
    }

    #[tokio::test]
    async fn eof_mid_head_is_truncated_and_before_is_closed() {
        let mut io = tokio_test::io::Builder::new().read(b"GET http").build();
        let mut buf = BytesMut::new();
        assert!(matches!(
            read_request(&mut io, &mut buf, &limits()).await,
            Err(HeadError::Truncated)
        ));
        let mut io = tokio_test::io::Builder::new().build();
        let mut buf = BytesMut::new();
        assert!(matches!(
            read_request(&mut io, &mut buf, &limits()).await,
            Err(HeadError::Closed)
        ));
    }

    #[test]
    fn response_round_trip() {
        let raw = b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM\r\nContent-Length: 0\r\n\r\n";
        let (head, n) = ResponseHead::parse(raw, &HeadLimits::response(&Limits::default()))
            .expect("valid")
            .expect("complete");
        assert_eq!(n, raw.len());
        assert_eq!(head.status, 407);
        assert_eq!(head.to_bytes(), raw.to_vec());
    }
}
