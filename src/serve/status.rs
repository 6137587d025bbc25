//! `/-/status`: placeholder, filled in below.
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub(super) struct Report;

pub(super) fn gather(
    _store: Option<&Path>,
    _live: &[(String, PathBuf)],
    _started: SystemTime,
) -> Report {
    Report
}
pub(super) fn json(_r: &Report) -> String {
    String::new()
}
pub(super) fn html(_r: &Report) -> String {
    String::new()
}
