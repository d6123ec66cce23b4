//! Fuzzes the CNTLM config-file reader and keyword validation (issue 2 §4): any bytes, even
//! invalid UTF-8 or lines past CNTLM's 4096-byte buffer, give entries, warnings and errors,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = cntlm::config::file::parse(data);
    // Every entry points at a real line of the input.
    let lines = data.split(|&b| b == b'\n').count();
    for entry in &text.entries {
        assert!(entry.line >= 1 && entry.line <= lines);
    }
    let _ = cntlm::config::keywords::read_file("fuzz.conf", data);
});
