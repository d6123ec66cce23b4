//! Answers cntlm makes itself: a status, a one-line text body, and (for errors) a close.

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The reason phrase for the statuses we generate.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        508 => "Loop Detected",
        _ => "Error",
    }
}

/// The bytes of an answer with `status` and the text `message`; the connection is closed
/// after it. 407s carry CNTLM's Basic challenge so clients that prompt can prompt.
pub fn error_bytes(status: u16, message: &str) -> Vec<u8> {
    let body = format!("cntlm: {message}\n");
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nProxy-Connection: close\r\n",
        reason(status),
        body.len()
    );
    if status == 407 {
        out.push_str("Proxy-Authenticate: Basic realm=\"Cntlm for parent\"\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

/// Writes an error answer (see `error_bytes`) and shuts the write side down.
pub async fn send_error<W: AsyncWrite + Unpin>(
    out: &mut W,
    status: u16,
    message: &str,
) -> std::io::Result<()> {
    out.write_all(&error_bytes(status, message)).await?;
    out.flush().await?;
    out.shutdown().await
}
