//! Injected failures of the test server: which request gets which fault.
//!
//! Protects reproducibility of the reliability tests: every decision is a pure function of the
//! seed, the fault kind, the request path and how many requests that path has had since the faults
//! were last set, so the outcome does not depend on how concurrent requests interleave.

use std::collections::HashMap;
use std::time::Duration;

/// Failures to inject (all off by default). Rates are probabilities in `0.0..=1.0`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Seeds every rate decision.
    pub seed: u64,
    /// Answer 500.
    pub error_rate: f64,
    /// Send the headers with the full `Content-Length`, about half the body, then close.
    pub truncate_rate: f64,
    /// Answer `Range` requests with 200 and the full body.
    pub ignore_range: bool,
    /// `(rate, pause)`: send about half the body, sleep `pause`, then send the rest.
    pub stall: Option<(f64, Duration)>,
    /// Paths starting with one of these get 404 (compared without the leading `/`).
    pub not_found_prefixes: Vec<String>,
    /// The first N requests of each path get 500, later ones succeed.
    pub fail_first_n: usize,
}

/// The fault that shaped a response (recorded in the request log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// 404 from `not_found_prefixes`.
    NotFound,
    /// 500 from `fail_first_n`.
    FailFirst,
    /// 500 from `error_rate`.
    Error,
    /// Body cut short from `truncate_rate`.
    Truncate,
    /// A `Range` request answered 200 in full.
    IgnoreRange,
    /// Body paused half-way from `stall`.
    Stall,
}

/// What to do to one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Decision {
    /// Answer with this fault's status instead of the file.
    pub(crate) early: Option<FaultKind>,
    pub(crate) ignore_range: bool,
    pub(crate) truncate: bool,
    pub(crate) stall: Option<Duration>,
}

#[derive(Debug)]
pub(super) struct FaultState {
    faults: Faults,
    /// Requests seen per path since the faults were set.
    seen: HashMap<String, u64>,
}

impl FaultState {
    pub(super) fn new(faults: Faults) -> Self {
        FaultState {
            faults,
            seen: HashMap::new(),
        }
    }

    pub(super) fn set(&mut self, faults: Faults) {
        self.faults = faults;
        self.seen.clear();
    }

    /// Decide the fate of the next request for `path` (percent-decoded, with its leading `/`).
    pub(super) fn decide(&mut self, path: &str) -> Decision {
        let f = &self.faults;
        let rel = path.trim_start_matches('/');
        let seen = self.seen.entry(path.to_owned()).or_insert(0);
        let n = *seen;
        *seen += 1;
        let hit = |kind: u8, rate: f64| rate > 0.0 && roll(f.seed, kind, path, n) < rate;

        let mut d = Decision {
            ignore_range: f.ignore_range,
            ..Decision::default()
        };
        if f.not_found_prefixes
            .iter()
            .any(|p| rel.starts_with(p.trim_start_matches('/')))
        {
            d.early = Some(FaultKind::NotFound);
        } else if n < f.fail_first_n as u64 {
            d.early = Some(FaultKind::FailFirst);
        } else if hit(1, f.error_rate) {
            d.early = Some(FaultKind::Error);
        } else if hit(2, f.truncate_rate) {
            d.truncate = true;
        } else if let Some((rate, pause)) = f.stall
            && hit(3, rate)
        {
            d.stall = Some(pause);
        }
        d
    }
}

/// A uniform number in `[0, 1)` fixed by its inputs (FNV-1a, then the splitmix64 finaliser).
fn roll(seed: u64, kind: u8, path: &str, n: u64) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = seed
        .to_le_bytes()
        .into_iter()
        .chain([kind])
        .chain(path.bytes())
        .chain(n.to_le_bytes());
    for b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_roughly_right_and_reproducible() {
        let faults = Faults {
            seed: 7,
            error_rate: 0.3,
            ..Faults::default()
        };
        let run = || {
            let mut s = FaultState::new(faults.clone());
            (0..2000)
                .map(|i| s.decide(&format!("/f/{}", i % 50)).early.is_some())
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let hits = a.iter().filter(|h| **h).count();
        assert!((450..750).contains(&hits), "{hits}");
    }

    #[test]
    fn fail_first_n_counts_per_path_and_restarts_on_set() {
        let mut s = FaultState::new(Faults {
            fail_first_n: 2,
            ..Faults::default()
        });
        let early = |s: &mut FaultState, p: &str| s.decide(p).early;
        assert_eq!(early(&mut s, "/a"), Some(FaultKind::FailFirst));
        assert_eq!(early(&mut s, "/b"), Some(FaultKind::FailFirst));
        assert_eq!(early(&mut s, "/a"), Some(FaultKind::FailFirst));
        assert_eq!(early(&mut s, "/a"), None);
        s.set(Faults {
            fail_first_n: 1,
            ..Faults::default()
        });
        assert_eq!(early(&mut s, "/a"), Some(FaultKind::FailFirst));
        assert_eq!(early(&mut s, "/a"), None);
    }
}
