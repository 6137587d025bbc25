//! `--limit-rate`: one token bucket shared by every transfer of a `Fetcher`.
//!
//! Protects no integrity invariant; it only delays. A transfer takes the tokens of each chunk it
//! has read and sleeps off any debt before reading the next, so the sum over all transfers stays
//! at the rate: over any interval of `t` seconds, at most `rate × t` bytes plus the burst
//! (`BURST` of the rate, 0.1 s) plus one chunk per running transfer (the read that precedes its
//! payment). The bucket holds only the burst, so idle time between files does not bank a second
//! of credit that a 5 s window would then see as 20 % too much (measured: 130 KiB/s for `100k`).
//!
//! What the upstream server observes of a plain stream also includes the kernel's socket buffers
//! (the client's receive buffer grows with autotuning, the server's send buffer holds what it
//! wrote ahead), hundreds of KiB per connection that this limiter cannot see and reqwest gives no
//! way to cap (no `SO_RCVBUF` option, an opaque connection in its connector layer). So items are
//! paid for before they are asked for, in pieces (`download`): the bucket then bounds what the
//! server sends. `scripts/bench-limit-rate.sh` measures it from the server side.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The bucket's capacity, as a fraction of one second of the rate.
const BURST: f64 = 0.1;

#[derive(Debug)]
pub(super) struct RateLimiter {
    /// Bytes per second.
    rate: f64,
    /// Bucket capacity in bytes.
    burst: f64,
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
        Self::starting_at(bytes_per_second, Instant::now())
    }

    fn starting_at(bytes_per_second: u64, now: Instant) -> Self {
        let rate = bytes_per_second.max(1) as f64;
        let burst = rate * BURST;
        RateLimiter {
            rate,
            burst,
            state: Mutex::new(Bucket {
                tokens: burst,
                last: now,
            }),
        }
    }

    /// Take `n` bytes from the bucket, sleeping until they are paid for.
    pub(super) async fn acquire(&self, n: u64) {
        let wait = self.take(n, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Take `n` bytes at `now`; the time until the bucket is out of debt.
    fn take(&self, n: u64, now: Instant) -> Duration {
        let mut b = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let refill = now.saturating_duration_since(b.last).as_secs_f64() * self.rate;
        b.tokens = (b.tokens + refill).min(self.burst) - n as f64;
        b.last = now.max(b.last);
        if b.tokens < 0.0 {
            Duration::from_secs_f64(-b.tokens / self.rate)
        } else {
            Duration::ZERO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulated clock: `transfers` readers each take `chunk` bytes, sleep what they are told,
    /// and read again, from `start` for `seconds`; returns (time, bytes) of every take.
    fn simulate(
        l: &RateLimiter,
        start: Instant,
        transfers: usize,
        chunk: u64,
        seconds: f64,
    ) -> Vec<(Instant, u64)> {
        let end = start + Duration::from_secs_f64(seconds);
        let mut next = vec![start; transfers];
        let mut takes = Vec::new();
        loop {
            let (i, &t) = next.iter().enumerate().min_by_key(|(_, t)| **t).unwrap();
            if t >= end {
                return takes;
            }
            takes.push((t, chunk));
            next[i] = t + l.take(chunk, t);
        }
    }

    fn max_window(takes: &[(Instant, u64)], window: Duration) -> u64 {
        takes
            .iter()
            .map(|&(from, _)| {
                takes
                    .iter()
                    .filter(|(t, _)| *t >= from && *t < from + window)
                    .map(|(_, n)| n)
                    .sum::<u64>()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn idle_time_banks_no_more_than_the_burst() {
        // Idle for 3 s, then four transfers read 16 KiB chunks without pause for 20 s: the
        // busiest 5 s window holds at most 5 s of the rate, the burst and one chunk per transfer
        // (a bucket of one second banked a whole second more: 120 % of the rate at 100k).
        for rate in [100 * 1024, 1024 * 1024] {
            let chunk = 16 * 1024;
            let t0 = Instant::now();
            let l = RateLimiter::starting_at(rate, t0);
            let takes = simulate(&l, t0 + Duration::from_secs(3), 4, chunk, 20.0);
            let five = 5 * rate;
            let max = max_window(&takes, Duration::from_secs(5));
            let bound = five + rate / 10 + 4 * chunk;
            assert!(
                max <= bound,
                "{max} bytes in 5 s at {rate} B/s, bound {bound}"
            );
            if rate >= 1024 * 1024 {
                assert!(max <= five + five / 10, "{max} bytes in 5 s at {rate} B/s");
            }
            // and it does not under-deliver either
            let total: u64 = takes.iter().map(|(_, n)| n).sum();
            assert!(total >= 20 * rate * 95 / 100, "{total} bytes in 20 s");
        }
    }

    #[test]
    fn a_fresh_limiter_allows_only_the_burst_at_once() {
        let t0 = Instant::now();
        let l = RateLimiter::starting_at(100_000, t0);
        assert_eq!(l.take(10_000, t0), Duration::ZERO);
        // the next 50 000 bytes at the same instant are paid for over half a second
        assert_eq!(l.take(50_000, t0), Duration::from_millis(500));
    }
}
