//! Logs: one line per request with what an operator needs, and never a secret
//! (reliability-bar.md §F 29): no password, no NTLM message, no Proxy-Authorization value.

#[path = "support/fake.rs"]
mod fake;

use std::io::Write;
use std::sync::{Arc, Mutex};

use fake::{ParentMode, TEST_TIMEOUT, TestClient, parent_config, start_parent, start_proxy};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn request_lines_are_logged_without_secrets() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (parent, _) = start_parent(ParentMode::Ntlm).await;
        let proxy = start_proxy(parent_config(&[parent], true));
        for _ in 0..2 {
            let mut c = TestClient::connect(proxy.addr).await;
            let _ = c
                .request(
                    "GET",
                    b"GET http://example.invalid/logged HTTP/1.1\r\nHost: example.invalid\r\nProxy-Authorization: Basic Y2xpZW50OnNlbnRpbmVs\r\n\r\n",
                )
                .await;
        }
    })
    .await
    .expect("test timed out");
    let text = String::from_utf8_lossy(&capture.0.lock().expect("lock")).into_owned();
    assert!(
        text.contains("http://example.invalid/logged"),
        "a per-request line: {text}"
    );
    assert!(text.contains("via="), "names the way out");
    for secret in [
        "Secret-1",
        "TlRMTVNTUAAD",
        "TlRMTVNTUAAB",
        "TlRMTVNTUAAC",
        "Y2xpZW50OnNlbnRpbmVs",
        "NTLM ",
    ] {
        assert!(!text.contains(secret), "log leaks {secret}");
    }
}
