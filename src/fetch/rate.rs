//! `--limit-rate`: one token bucket shared by every transfer of a `Fetcher`.
//!
//! Protects no integrity invariant; it only delays. A transfer takes its tokens before writing a
//! chunk and sleeps off any debt, so the sum over all transfers stays near the rate with a burst
//! of at most one second's worth.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(super) struct RateLimiter {
    /// Bytes per second (and bucket capacity).
    rate: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Available bytes; negative is debt that later takers wait out.
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub(super) fn new(bytes_per_second: u64) -> Self {
        let rate = bytes_per_second.max(1) as f64;
        RateLimiter {
            rate,
            state: Mutex::new(Bucket {
                tokens: rate,
                last: Instant::now(),
            }),
        }
    }

    /// Take `n` bytes from the bucket, sleeping until they are paid for.
    pub(super) async fn acquire(&self, n: u64) {
        let wait = {
            let mut b = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let refill = now.saturating_duration_since(b.last).as_secs_f64() * self.rate;
            b.tokens = (b.tokens + refill).min(self.rate) - n as f64;
            b.last = now;
            if b.tokens < 0.0 {
                Duration::from_secs_f64(-b.tokens / self.rate)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn burst_then_rate() {
        let l = RateLimiter::new(100_000);
        let t = Instant::now();
        l.acquire(100_000).await; // the burst
        assert!(t.elapsed() < Duration::from_millis(50));
        l.acquire(30_000).await;
        l.acquire(20_000).await;
        assert!(
            t.elapsed() >= Duration::from_millis(450),
            "{:?}",
            t.elapsed()
        );
    }
}
