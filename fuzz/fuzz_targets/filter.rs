//! Filter expressions (Python `re` syntax via fancy-regex) must never panic, and a parsed filter
//! must print back to the text it came from.
#![no_main]
use libfuzzer_sys::fuzz_target;
use streamvault::streams::Filter;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(f) = Filter::parse(s)
    {
        assert_eq!(f.to_string(), s);
    }
});
