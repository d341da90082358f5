//! How fast this process's worker takes requests off the queue, for the
//! `Retry-After` of a full queue: the store's own hint grows with the queue's
//! length (it knows no rate), so a long queue that drains fast told clients to
//! wait far longer than a place took to free.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How far back claims count.
const WINDOW: Duration = Duration::from_secs(10);
/// The longest wait a full queue asks for.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Claims over the last [`WINDOW`] (a batch per claim).
#[derive(Default)]
pub(crate) struct DrainRate {
    claims: Mutex<VecDeque<(Instant, usize)>>,
}

impl DrainRate {
    /// `n` requests were claimed at `at`.
    pub(crate) fn record(&self, n: usize, at: Instant) {
        let mut c = self.claims.lock().expect("drain");
        c.push_back((at, n));
        prune(&mut c, at);
    }

    /// Requests claimed per second over the window ending at `now`; None when
    /// none were (no worker here, or it claims nothing).
    pub(crate) fn per_second(&self, now: Instant) -> Option<f64> {
        let mut c = self.claims.lock().expect("drain");
        prune(&mut c, now);
        let n: usize = c.iter().map(|(_, n)| n).sum();
        (n > 0).then(|| n as f64 / WINDOW.as_secs_f64())
    }
}

fn prune(c: &mut VecDeque<(Instant, usize)>, now: Instant) {
    while c
        .front()
        .is_some_and(|(t, _)| now.saturating_duration_since(*t) > WINDOW)
    {
        c.pop_front();
    }
}

/// The wait to advise when `queued` fill a queue of `capacity`: the time this
/// worker takes to claim enough for one place to free, at its recent rate (whole
/// seconds, at least 1, at most [`MAX_WAIT`]); `fallback` (the store's hint) when
/// nothing drains it here.
pub(crate) fn retry_after(
    queued: usize,
    capacity: usize,
    rate: Option<f64>,
    fallback: Duration,
) -> Duration {
    let Some(rate) = rate.filter(|r| *r > 0.0) else {
        return fallback.min(MAX_WAIT);
    };
    let over = (queued + 1).saturating_sub(capacity).max(1) as f64;
    Duration::from_secs((over / rate).ceil() as u64).clamp(Duration::from_secs(1), MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_counts_claims_of_the_last_ten_seconds() {
        let d = DrainRate::default();
        let t0 = Instant::now();
        assert_eq!(d.per_second(t0), None);
        d.record(50, t0);
        d.record(150, t0 + Duration::from_secs(5));
        assert_eq!(d.per_second(t0 + Duration::from_secs(6)), Some(20.0));
        // The first batch left the window.
        assert_eq!(d.per_second(t0 + Duration::from_secs(12)), Some(15.0));
        assert_eq!(d.per_second(t0 + Duration::from_secs(30)), None);
    }

    #[test]
    fn a_draining_queue_asks_for_the_time_one_place_takes() {
        let hint = Duration::from_secs(21);
        // 2,000 queued at capacity, claimed at 500/s: a place frees within a second.
        assert_eq!(
            retry_after(2_000, 2_000, Some(500.0), hint),
            Duration::from_secs(1)
        );
        // Slow: 0.2 claims/s, one over capacity → 5 s; ten over → 50 s.
        assert_eq!(retry_after(10, 10, Some(0.2), hint), Duration::from_secs(5));
        assert_eq!(
            retry_after(19, 10, Some(0.2), hint),
            Duration::from_secs(50)
        );
        // Capped.
        assert_eq!(retry_after(100, 10, Some(0.2), hint), MAX_WAIT);
        // Nothing drains it here: the store's hint, capped.
        assert_eq!(retry_after(2_000, 2_000, None, hint), hint);
        assert_eq!(
            retry_after(9_000, 2_000, None, Duration::from_secs(91)),
            MAX_WAIT
        );
    }
}
