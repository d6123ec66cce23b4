//! Fuzzes the PAC result parser (`FindProxyForURL`'s return string, which a hostile or broken
//! PAC controls): it must never panic, and whatever it accepts must survive a
//! display-then-parse round trip unchanged.
#![no_main]

use cntlm::pac::{PacProxy, parse_pac_result};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(proxies) = parse_pac_result(text) {
        assert!(
            !proxies.is_empty(),
            "an accepted result names at least one route"
        );
        let shown = proxies
            .iter()
            .map(PacProxy::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        assert_eq!(parse_pac_result(&shown).as_ref(), Ok(&proxies), "{shown}");
    }
});
