//! Fuzzes the chunked-body validator and copier (reliability-bar.md §A 2): never a panic,
//! never more bytes out than in (a size is rejected, never wrapped), and an accepted body is
//! copied verbatim: the output is exactly the prefix of the input it consumed.
#![no_main]

use std::time::Duration;

use bytes::BytesMut;
use cntlm::http::body::{BodyKind, copy_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut reader = data;
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let result = runtime.block_on(copy_body(
        &mut reader,
        &mut buf,
        &mut out,
        BodyKind::Chunked,
        Duration::from_secs(1),
    ));
    assert!(out.len() <= data.len());
    if result.is_ok() {
        let consumed = data.len() - buf.len() - reader.len();
        assert_eq!(&out[..], &data[..consumed]);
    }
});
