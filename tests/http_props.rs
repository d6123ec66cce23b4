//! Property tests of the framing layer: chunked bodies are copied byte for byte and
//! validated whatever the chunking and however the reads split them; request heads re-emit
//! to bytes that parse back to the same head.

use std::time::Duration;

use bytes::BytesMut;
use cntlm::http::body::{BodyKind, copy_body};
use cntlm::http::head::{HeadLimits, RequestHead};
use proptest::prelude::*;

/// A reader that hands out `data` in pieces of the given sizes (cycled).
struct Pieces {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<usize>,
    turn: usize,
}

impl tokio::io::AsyncRead for Pieces {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let size = self.sizes[self.turn % self.sizes.len()].max(1);
        self.turn += 1;
        let end = (self.pos + size)
            .min(self.data.len())
            .min(self.pos + buf.remaining());
        let start = self.pos;
        buf.put_slice(&self.data[start..end]);
        self.pos = end;
        std::task::Poll::Ready(Ok(()))
    }
}

fn encode_chunked(chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks.iter().filter(|c| !c.is_empty()) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
        .block_on(f)
}

proptest! {
    #[test]
    fn chunked_bodies_copy_verbatim(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..12),
        sizes in proptest::collection::vec(1usize..64, 1..8),
        trailing in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        let wire = encode_chunked(&chunks);
        let mut data = wire.clone();
        data.extend_from_slice(&trailing);
        let mut reader = Pieces { data, pos: 0, sizes, turn: 0 };
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let n = run(copy_body(&mut reader, &mut buf, &mut out, BodyKind::Chunked, Duration::from_secs(5)))
            .expect("a valid chunked body");
        prop_assert_eq!(&out, &wire);
        prop_assert_eq!(n, wire.len() as u64);
        // What follows the body is left for the next message.
        let mut rest = buf.to_vec();
        rest.extend_from_slice(&reader.data[reader.pos..]);
        prop_assert_eq!(rest, trailing);
    }

    #[test]
    fn corrupted_chunked_bodies_never_copy_more_than_they_contain(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..100), 1..6),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut wire = encode_chunked(&chunks);
        let i = at.index(wire.len());
        wire[i] = byte;
        let len = wire.len();
        let mut reader = Pieces { data: wire, pos: 0, sizes: vec![7], turn: 0 };
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let _ = run(copy_body(&mut reader, &mut buf, &mut out, BodyKind::Chunked, Duration::from_secs(5)));
        prop_assert!(out.len() <= len);
    }

    #[test]
    fn request_heads_round_trip(
        method in "[A-Z]{1,10}",
        path in "/[a-zA-Z0-9._~!$&'()*+,;=:@%/?{}`\"-]{0,60}",
        fields in proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,20}", "[ -~]{0,40}"), 0..20),
    ) {
        let mut raw = format!("{method} http://h{path} HTTP/1.1\r\n");
        for (n, v) in &fields {
            raw.push_str(&format!("{n}: {}\r\n", v.trim()));
        }
        raw.push_str("\r\n");
        let limits = HeadLimits::from(&cntlm::config::Limits::default());
        let (head, used) = RequestHead::parse(raw.as_bytes(), &limits).expect("valid").expect("complete");
        prop_assert_eq!(used, raw.len());
        let again = head.to_bytes();
        let (back, _) = RequestHead::parse(&again, &limits).expect("valid").expect("complete");
        prop_assert_eq!(back, head);
    }
}

proptest! {
    /// The fuzz target's invariant, on random input behind a valid request line.
    #[test]
    fn any_accepted_head_re_emits_to_itself(tail in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut data = b"GET http://h/ HTTP/1.1\r\n".to_vec();
        data.extend_from_slice(&tail);
        let limits = HeadLimits::from(&cntlm::config::Limits::default());
        if let Ok(Some((head, used))) = RequestHead::parse(&data, &limits) {
            prop_assert!(used <= data.len());
            let again = head.to_bytes();
            let back = RequestHead::parse(&again, &limits);
            prop_assert!(matches!(&back, Ok(Some((b, n))) if *b == head && *n == again.len()), "{:?}", back);
        }
    }

    /// The fuzz target's invariant for chunked bodies, on random bytes after a valid start.
    #[test]
    fn any_chunked_input_copies_a_verbatim_prefix(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut data = b"5\r\nhello\r\n".to_vec();
        data.extend_from_slice(&tail);
        let mut reader = &data[..];
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let result = run(copy_body(&mut reader, &mut buf, &mut out, BodyKind::Chunked, Duration::from_secs(1)));
        prop_assert!(out.len() <= data.len());
        if result.is_ok() {
            let consumed = data.len() - buf.len() - reader.len();
            prop_assert_eq!(&out[..], &data[..consumed]);
        }
    }
}
