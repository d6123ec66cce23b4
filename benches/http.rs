//! Criterion micro-benchmarks of the per-request HTTP work: parsing a request head (what every
//! client request costs before anything is forwarded), re-emitting it, and relaying a chunked
//! body through the validating framer (RFC 9112 §7.1).
//!
//! Run with `cargo bench --bench http`; the end-to-end benchmark is `scripts/bench`
//! (docs/performance.md). `cargo test --all-targets` runs each once as a smoke test.

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use cntlm::config::Limits;
use cntlm::http::body::{BodyKind, chunk_size, copy_body};
use cntlm::http::{HeadLimits, RequestHead};

/// What wrk sends through a proxy in scripts/bench: an absolute-form GET, few fields.
const SMALL: &[u8] = b"GET http://127.0.0.1:8080/1k HTTP/1.1\r\n\
Host: 127.0.0.1:8080\r\n\
\r\n";

/// A browser-sized request: a dozen fields and a cookie, as `npm` or Firefox send them.
const BROWSER: &[u8] =
    b"GET http://registry.example.com/some-package/-/some-package-1.2.3.tgz HTTP/1.1\r\n\
Host: registry.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Proxy-Connection: keep-alive\r\n\
Connection: keep-alive\r\n\
Referer: http://registry.example.com/some-package\r\n\
Cookie: session=0123456789abcdef0123456789abcdef; theme=dark; consent=yes; tracking=no\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-GPC: 1\r\n\
Priority: u=0, i\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
\r\n";

fn heads(c: &mut Criterion) {
    let limits = HeadLimits::from(&Limits::default());
    let mut group = c.benchmark_group("head");
    for (name, raw) in [("small", SMALL), ("browser", BROWSER)] {
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| RequestHead::parse(black_box(raw), &limits))
        });
        let (head, _) = RequestHead::parse(raw, &limits)
            .expect("the constant is a valid head")
            .expect("the constant is a whole head");
        let mut out = Vec::with_capacity(1024);
        group.bench_function(format!("emit/{name}"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&head).write_to(&mut out);
                out.len()
            })
        });
    }
    group.finish();
}

/// A 64 KiB body in 4 KiB chunks (a typical chunked origin's framing), with a trailer.
fn chunked_body() -> Vec<u8> {
    let mut body = Vec::new();
    for _ in 0..16 {
        body.extend_from_slice(b"1000\r\n");
        body.extend_from_slice(&[b'x'; 4096]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\nX-Checksum: 1\r\n\r\n");
    body
}

fn chunked(c: &mut Criterion) {
    let mut group = c.benchmark_group("chunked");
    group.bench_function("chunk_size/line", |b| {
        b.iter(|| chunk_size(black_box(b"1000;name=value\r\n")))
    });
    let body = chunked_body();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    group.throughput(Throughput::Bytes(body.len() as u64));
    // The framer reads from a socket-like source and writes to the receiver; here the source
    // is the body in memory (delivered in one read) and the receiver discards it.
    group.bench_function("relay/64KiB_in_4KiB_chunks", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut src: &[u8] = black_box(&body);
                let mut buf = BytesMut::new();
                copy_body(
                    &mut src,
                    &mut buf,
                    &mut tokio::io::sink(),
                    BodyKind::Chunked,
                    Duration::from_secs(5),
                )
                .await
                .expect("the body is well framed")
            })
        })
    });
    group.finish();
}

criterion_group!(benches, heads, chunked);
criterion_main!(benches);
