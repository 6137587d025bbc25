//! The path validator: whatever it accepts is relative, has no `..`/`.`/empty component, no NUL
//! and no backslash (invariant 5).
#![no_main]
use libfuzzer_sys::fuzz_target;
use streamvault::streams::check_path;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && check_path(s).is_ok()
    {
        assert!(!s.starts_with('/'));
        assert!(!s.contains('\0') && !s.contains('\\'));
        assert!(s.split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
    }
});
