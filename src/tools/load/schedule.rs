//! The open model's arrival schedule: when send number `k` is *meant* to happen.
//!
//! Under `--rate R` sends follow a fixed, constant-arrival timetable that nothing the server
//! does can slow down: send `k` is due `k / R` seconds after the start (with `--ramp T` the rate
//! rises linearly from 0 to `R` over `T` first). A send that cannot go out on time, because
//! every connection already has `--pipeline` requests unanswered, waits and goes out late, and
//! its latency still counts from the timetable's time: that is wrk2's correction for
//! coordinated omission, and why a stalled server shows up in the corrected percentiles.
//!
//! A pure function of `k` and elapsed time, shared by the loop (which sends) and the pacer
//! thread (which wakes it), so the two agree without talking.

/// The timetable of one process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Sends per second once the ramp is over.
    rate: f64,
    /// Seconds of linear ramp from 0 to `rate` (0: none).
    ramp_s: f64,
}

impl Schedule {
    /// `rate` sends per second (above 0), reached after a linear ramp of `ramp_s` seconds.
    pub fn new(rate: f64, ramp_s: f64) -> Schedule {
        Schedule {
            rate,
            ramp_s: ramp_s.max(0.0),
        }
    }

    /// Microseconds after the start at which send `k` (0-based) is due: the time by which the
    /// rate's integral reaches `k`.
    pub fn offset_us(&self, k: u64) -> u64 {
        let k = k as f64;
        // Sends due during the ramp: the area of the triangle, R * T / 2.
        let in_ramp = self.rate * self.ramp_s / 2.0;
        let t = if k < in_ramp {
            (2.0 * k * self.ramp_s / self.rate).sqrt()
        } else {
            self.ramp_s + (k - in_ramp) / self.rate
        };
        (t * 1e6) as u64
    }

    /// How many sends are due `elapsed_us` after the start: those with `offset_us(k) <=
    /// elapsed_us` (send 0 is due at once).
    pub fn due_by(&self, elapsed_us: u64) -> u64 {
        let t = elapsed_us as f64 / 1e6;
        let sent = if t < self.ramp_s {
            self.rate * t * t / (2.0 * self.ramp_s)
        } else {
            self.rate * self.ramp_s / 2.0 + self.rate * (t - self.ramp_s)
        };
        // Float rounding may put k's own time a hair after `elapsed_us`: correct by stepping.
        let mut n = sent.floor() as u64 + 1;
        while n > 0 && self.offset_us(n - 1) > elapsed_us {
            n -= 1;
        }
        while self.offset_us(n) <= elapsed_us {
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let s = Schedule::new(1000.0, 0.0);
        assert_eq!(s.offset_us(0), 0);
        assert_eq!(s.offset_us(1), 1000);
        assert_eq!(s.offset_us(2500), 2_500_000);
        assert_eq!(s.due_by(0), 1);
        assert_eq!(s.due_by(999), 1);
        assert_eq!(s.due_by(1000), 2);
        assert_eq!(s.due_by(10_000_000), 10_001);
    }

    #[test]
    fn ramp_rises_linearly_then_holds() {
        let s = Schedule::new(100.0, 2.0);
        // 100 sends during the 2 s ramp (the triangle), then 100 per second.
        assert_eq!(s.due_by(2_000_000), 101);
        assert_eq!(s.due_by(3_000_000), 201);
        // A quarter of the ramp's sends in its first half (the area grows with t²).
        assert_eq!(s.due_by(1_000_000), 26);
    }

    #[test]
    fn due_by_and_offset_agree_everywhere() {
        for s in [
            Schedule::new(7.0, 0.0),
            Schedule::new(12_345.0, 1.5),
            Schedule::new(0.5, 3.0),
        ] {
            for k in 0..2000 {
                let at = s.offset_us(k);
                assert!(
                    s.due_by(at) > k,
                    "{s:?}: send {k} not due at its own time {at}"
                );
                if at > 0 {
                    assert!(s.due_by(at - 1) <= k, "{s:?}: send {k} due before {at}");
                }
                assert!(s.offset_us(k + 1) >= at, "{s:?}: not monotonic at {k}");
            }
        }
    }
}
