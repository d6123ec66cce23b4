//! Fuzzes the request-head parser (reliability-bar.md §A 1): never a panic; an accepted head
//! consumed no more than it was given, and re-emitting it gives bytes that parse back to the
//! same head (what we send upstream is what we understood).
#![no_main]

use cntlm::config::Limits;
use cntlm::http::head::{HeadLimits, RequestHead};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = HeadLimits::from(&Limits::default());
    if let Ok(Some((head, used))) = RequestHead::parse(data, &limits) {
        assert!(used <= data.len());
        let again = head.to_bytes();
        let reparsed = RequestHead::parse(&again, &limits);
        assert!(
            matches!(&reparsed, Ok(Some((back, n))) if *back == head && *n == again.len()),
            "re-emitted head does not parse back: {reparsed:?}"
        );
    }
});
