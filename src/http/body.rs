//! Message body framing (RFC 9112 §6) and copying a body from one connection to another.
//!
//! Bodies are streamed, never buffered whole. Chunked bodies are copied byte for byte
//! (chunk extensions and trailers included) while a small state machine validates the chunk
//! lines, so a smuggling attempt or a wrapped size never passes through us.

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::http::head::{RequestHead, ResponseHead, Version};
use crate::http::headers::Headers;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body.
    None,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// Why a message's framing is unacceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// Both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.3 item 3: smuggling risk).
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndChunked,
    /// Several `Content-Length` values that differ, or one that is not a plain number.
    #[error("invalid Content-Length")]
    BadLength,
    /// A transfer coding list that does not end in a single `chunked`.
    #[error("unsupported Transfer-Encoding")]
    BadTransferEncoding,
    /// `Transfer-Encoding` in an HTTP/1.0 message (RFC 9112 §6.1).
    #[error("Transfer-Encoding in an HTTP/1.0 message")]
    TransferEncodingOn10,
}

/// Why copying a body failed, and on which side.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The sender's bytes break the framing (bad chunk line).
    #[error("malformed body: {0}")]
    Malformed(&'static str),
    /// The sender closed before the body ended.
    #[error("connection closed in the middle of a body")]
    Truncated,
    /// The sender went quiet for longer than the idle timeout.
    #[error("body stalled")]
    Timeout,
    /// Reading from the sender failed.
    #[error("reading the body failed")]
    Read(#[source] io::Error),
    /// Writing to the receiver failed.
    #[error("writing the body failed")]
    Write(#[source] io::Error),
}

impl BodyError {
    /// Whether the receiving side failed (else the sending side did).
    pub fn is_write(&self) -> bool {
        matches!(self, BodyError::Write(_))
    }
}

/// Parses `Content-Length` fields: digits only, identical duplicates allowed (and merged by
/// the caller), anything else rejected (RFC 9112 §6.3 item 5). Values of 2^63 or more are
/// rejected rather than wrapped.
fn content_length(headers: &Headers) -> Result<Option<u64>, FramingError> {
    let mut found: Option<u64> = None;
    for value in headers.get_all("content-length") {
        for part in value.split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                return Err(FramingError::BadLength);
            }
            let n: u64 = std::str::from_utf8(part)
                .ok()
                .and_then(|s| s.parse().ok())
                .filter(|n| *n < (1u64 << 63))
                .ok_or(FramingError::BadLength)?;
            if found.is_some_and(|f| f != n) {
                return Err(FramingError::BadLength);
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// Whether `Transfer-Encoding` is present; if so it must be exactly one field whose last
/// coding is `chunked` (RFC 9112 §6.3 item 4), and `chunked` must appear once.
fn transfer_chunked(headers: &Headers) -> Result<bool, FramingError> {
    let values: Vec<&[u8]> = headers.get_all("transfer-encoding").collect();
    if values.is_empty() {
        return Ok(false);
    }
    if values.len() > 1 {
        return Err(FramingError::BadTransferEncoding);
    }
    let codings: Vec<&[u8]> = values[0]
        .split(|&b| b == b',')
        .map(|c| c.trim_ascii())
        .collect();
    let chunked = |c: &[u8]| c.eq_ignore_ascii_case(b"chunked");
    if codings.iter().any(|c| c.is_empty())
        || !codings.last().is_some_and(|c| chunked(c))
        || codings.iter().filter(|c| chunked(c)).count() != 1
    {
        return Err(FramingError::BadTransferEncoding);
    }
    Ok(true)
}

/// The body framing of a request (RFC 9112 §6.3 items 3–6).
pub fn request_body(head: &RequestHead) -> Result<BodyKind, FramingError> {
    let te = head.headers.contains("transfer-encoding");
    let cl = content_length(&head.headers)?;
    if te && cl.is_some() {
        return Err(FramingError::LengthAndChunked);
    }
    if te {
        if head.version == Version::Http10 {
            return Err(FramingError::TransferEncodingOn10);
        }
        transfer_chunked(&head.headers)?;
        return Ok(BodyKind::Chunked);
    }
    Ok(match cl {
        Some(0) | None => BodyKind::None,
        Some(n) => BodyKind::Length(n),
    })
}

/// The body framing of a response to a `method` request (RFC 9112 §6.3 items 1–7). The
/// caller handles 2xx to CONNECT and 101 (the connection becomes a tunnel).
pub fn response_body(method: &str, head: &ResponseHead) -> Result<BodyKind, FramingError> {
    if method.eq_ignore_ascii_case("HEAD")
        || head.is_interim()
        || head.status == 204
        || head.status == 304
    {
        return Ok(BodyKind::None);
    }
    let te = head.headers.contains("transfer-encoding");
    let cl = content_length(&head.headers)?;
    if te && cl.is_some() {
        return Err(FramingError::LengthAndChunked);
    }
    if te {
        // A response whose codings do not end in chunked is delimited by close (item 4).
        return Ok(match transfer_chunked(&head.headers) {
            Ok(true) => BodyKind::Chunked,
            _ => BodyKind::UntilClose,
        });
    }
    Ok(match cl {
        Some(0) => BodyKind::None,
        Some(n) => BodyKind::Length(n),
        None => BodyKind::UntilClose,
    })
}

/// Longest chunk-size line (size, extensions, CRLF) we accept.
const MAX_CHUNK_LINE: usize = 4096;

/// One source of body bytes: a socket and the bytes already read from it.
struct Source<'a, R> {
    io: &'a mut R,
    buf: &'a mut BytesMut,
    idle: Duration,
}

impl<R: AsyncRead + Unpin> Source<'_, R> {
    /// Reads more bytes into the buffer; `Ok(false)` at end of stream.
    async fn fill(&mut self) -> Result<bool, BodyError> {
        // Reads grow with the body: twice the buffer's size each time, from 8 KiB up to
        // 64 KiB. A small body (a parent's 407 page during the handshake) then never makes
        // the connection's buffer 64 KiB; thousands of tunnels opening at once each read one.
        let want = (self.buf.capacity() * 2).clamp(8 * 1024, 64 * 1024);
        self.buf.reserve(want);
        let n = tokio::time::timeout(self.idle, self.io.read_buf(self.buf))
            .await
            .map_err(|_| BodyError::Timeout)?
            .map_err(BodyError::Read)?;
        Ok(n > 0)
    }

    /// Takes one line ending in CRLF (bare LF is rejected) of at most `MAX_CHUNK_LINE`.
    async fn line(&mut self) -> Result<BytesMut, BodyError> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', self.buf) {
                if i == 0 || self.buf[i - 1] != b'\r' {
                    return Err(BodyError::Malformed("chunk line not ended by CRLF"));
                }
                return Ok(self.buf.split_to(i + 1));
            }
            if self.buf.len() > MAX_CHUNK_LINE {
                return Err(BodyError::Malformed("chunk line too long"));
            }
            if !self.fill().await? {
                return Err(BodyError::Truncated);
            }
        }
    }
}

/// Writes to the receiver, which gets the same idle allowance as the sender: a client that
/// stops reading must not pin the relay (and its upstream connection) forever.
async fn write<W: AsyncWrite + Unpin>(
    dst: &mut W,
    bytes: &[u8],
    idle: Duration,
) -> Result<(), BodyError> {
    match tokio::time::timeout(idle, dst.write_all(bytes)).await {
        Ok(r) => r.map_err(BodyError::Write),
        Err(_) => Err(BodyError::Write(io::Error::new(
            io::ErrorKind::TimedOut,
            "receiver stopped reading",
        ))),
    }
}

/// Parses a chunk-size line (RFC 9112 §7.1): 1–16 hex digits, optional extensions after `;`,
/// no whitespace before the size, no CR except the final one.
pub fn chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let body = line
        .strip_suffix(b"\r\n")
        .ok_or(BodyError::Malformed("chunk line not ended by CRLF"))?;
    if body.contains(&b'\r') || body.contains(&b'\n') {
        return Err(BodyError::Malformed("stray CR in chunk line"));
    }
    let digits_end = body
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(body.len());
    let (digits, rest) = body.split_at(digits_end);
    if digits.is_empty() || digits.len() > 16 {
        return Err(BodyError::Malformed("bad chunk size"));
    }
    let rest = rest.trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return Err(BodyError::Malformed("bad chunk size"));
    }
    let text = std::str::from_utf8(digits).map_err(|_| BodyError::Malformed("bad chunk size"))?;
    let size = u64::from_str_radix(text, 16).map_err(|_| BodyError::Malformed("bad chunk size"))?;
    if size >= 1u64 << 63 {
        return Err(BodyError::Malformed("chunk size too large"));
    }
    Ok(size)
}

/// Copies exactly `len` bytes.
async fn copy_exact<R, W>(
    src: &mut Source<'_, R>,
    dst: &mut W,
    mut len: u64,
) -> Result<(), BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    while len > 0 {
        if src.buf.is_empty() && !src.fill().await? {
            return Err(BodyError::Truncated);
        }
        let take = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(src.buf.len());
        write(dst, &src.buf[..take], src.idle).await?;
        src.buf.advance(take);
        len -= take as u64;
    }
    Ok(())
}

/// Copies a body framed as `kind` from (`io`, `buf`) to `dst` and flushes; returns the bytes
/// copied. Bytes after the body stay in `buf` (a pipelined request, the next response).
/// `idle` bounds each wait for the sender.
pub async fn copy_body<R, W>(
    io: &mut R,
    buf: &mut BytesMut,
    dst: &mut W,
    kind: BodyKind,
    idle: Duration,
) -> Result<u64, BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut src = Source { io, buf, idle };
    let mut total = 0u64;
    match kind {
        BodyKind::None => {}
        BodyKind::Length(n) => {
            copy_exact(&mut src, dst, n).await?;
            total = n;
        }
        BodyKind::UntilClose => loop {
            if src.buf.is_empty() && !src.fill().await? {
                break;
            }
            total += src.buf.len() as u64;
            write(dst, src.buf, src.idle).await?;
            src.buf.clear();
        },
        BodyKind::Chunked => loop {
            let line = src.line().await?;
            let size = chunk_size(&line)?;
            write(dst, &line, src.idle).await?;
            total += line.len() as u64;
            if size == 0 {
                // Trailer section (RFC 9112 §7.1.2): header lines until an empty line.
                let mut trailer_bytes = 0usize;
                loop {
                    let line = src.line().await?;
                    trailer_bytes += line.len();
                    if trailer_bytes > 64 * 1024 {
                        return Err(BodyError::Malformed("trailers too large"));
                    }
                    write(dst, &line, src.idle).await?;
                    total += line.len() as u64;
                    if &line[..] == b"\r\n" {
                        break;
                    }
                }
                break;
            }
            copy_exact(&mut src, dst, size).await?;
            total += size;
            while src.buf.len() < 2 {
                if !src.fill().await? {
                    return Err(BodyError::Truncated);
                }
            }
            if &src.buf[..2] != b"\r\n" {
                return Err(BodyError::Malformed("chunk data not followed by CRLF"));
            }
            write(dst, b"\r\n", src.idle).await?;
            src.buf.advance(2);
            total += 2;
        },
    }
    dst.flush().await.map_err(BodyError::Write)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::HeadLimits;

    fn req(raw: &str) -> RequestHead {
        RequestHead::parse(
            raw.as_bytes(),
            &HeadLimits::from(&crate::config::Limits::default()),
        )
        .expect("valid")
        .expect("complete")
        .0
    }

    #[test]
    fn rfc9112_6_3_content_length_and_chunked_is_rejected() {
        let h = req(
            "POST http://h/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(request_body(&h), Err(FramingError::LengthAndChunked));
    }

    #[test]
    fn rfc9112_6_3_bad_lengths_are_rejected() {
        for cl in [
            "1, 2",
            "+1",
            "-1",
            "0x1",
            "",
            "1 2",
            "a",
            "9223372036854775808",
        ] {
            let h = req(&format!(
                "POST http://h/ HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n"
            ));
            assert_eq!(request_body(&h), Err(FramingError::BadLength), "{cl}");
        }
        let h = req("POST http://h/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
        assert_eq!(request_body(&h), Err(FramingError::BadLength));
        let h = req("POST http://h/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(request_body(&h), Ok(BodyKind::Length(5)));
    }

    #[test]
    fn rfc9112_6_3_transfer_codings_must_end_in_chunked() {
        for te in ["xchunked", "chunked, identity", ",chunked", "gzip"] {
            let h = req(&format!(
                "POST http://h/ HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n"
            ));
            assert_eq!(
                request_body(&h),
                Err(FramingError::BadTransferEncoding),
                "{te}"
            );
        }
        let h = req(
            "POST http://h/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(request_body(&h), Err(FramingError::BadTransferEncoding));
        let h = req("POST http://h/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(request_body(&h), Err(FramingError::TransferEncodingOn10));
        let h = req("POST http://h/ HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n");
        assert_eq!(request_body(&h), Ok(BodyKind::Chunked));
    }

    #[test]
    fn chunk_sizes_are_validated_not_wrapped() {
        assert_eq!(chunk_size(b"1a\r\n").ok(), Some(26));
        assert_eq!(chunk_size(b"0;name=val\r\n").ok(), Some(0));
        for bad in [
            &b"\r\n"[..],
            b"g\r\n",
            b"-1\r\n",
            b"0x1\r\n",
            b" 1\r\n",
            b"+1\r\n",
            b"1\n",
            b"1;a\rb\r\n",
            b"10000000000000000\r\n",
            b"8000000000000000\r\n",
        ] {
            assert!(
                chunk_size(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[tokio::test]
    async fn chunked_body_is_copied_verbatim_across_reads() {
        let wire = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\n";
        let mut io = tokio_test::io::Builder::new()
            .read(&wire[..3])
            .read(&wire[3..15])
            .read(&wire[15..])
            .build();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let n = copy_body(
            &mut io,
            &mut buf,
            &mut out,
            BodyKind::Chunked,
            Duration::from_secs(5),
        )
        .await
        .expect("valid body");
        assert_eq!(out, wire.to_vec());
        assert_eq!(n, wire.len() as u64);
    }

    #[tokio::test]
    async fn chunk_data_without_crlf_is_malformed() {
        let mut io = tokio_test::io::Builder::new()
            .read(b"2\r\nabXX0\r\n\r\n")
            .build();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let r = copy_body(
            &mut io,
            &mut buf,
            &mut out,
            BodyKind::Chunked,
            Duration::from_secs(5),
        )
        .await;
        assert!(matches!(r, Err(BodyError::Malformed(_))));
    }

    #[tokio::test]
    async fn length_body_leaves_following_bytes() {
        let mut io = tokio_test::io::Builder::new()
            .read(b"ab")
            .read(b"cGET")
            .build();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        copy_body(
            &mut io,
            &mut buf,
            &mut out,
            BodyKind::Length(3),
            Duration::from_secs(5),
        )
        .await
        .expect("body");
        assert_eq!(out, b"abc");
        assert_eq!(&buf[..], b"GET");
    }

    #[tokio::test]
    async fn short_length_body_is_truncated() {
        let mut io = tokio_test::io::Builder::new().read(b"ab").build();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let r = copy_body(
            &mut io,
            &mut buf,
            &mut out,
            BodyKind::Length(3),
            Duration::from_secs(5),
        )
        .await;
        assert!(matches!(r, Err(BodyError::Truncated)));
    }
}
