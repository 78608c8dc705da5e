//! Kong-style rate limiting: a fixed clock-hour budget on the simulated clock, shared by
//! all tokens, plus a per-second limit.

const HOUR: i64 = 3_600_000_000;
const SEC: i64 = 1_000_000;

#[derive(Debug, Default)]
pub struct RateState {
    hour_key: i64,
    hour_used: u32,
    sec_key: (i64, u64),
    sec_used: u32,
}

#[derive(Debug, Clone)]
pub struct RateInfo {
    pub allowed: bool,
    pub limit_hour: u32,
    pub remaining_hour: u32,
    pub limit_sec: u32,
    pub remaining_sec: u32,
    /// Seconds until the exhausted window resets (for `Retry-After`).
    pub retry_after: u64,
    pub reset_hour: u64,
}

impl RateInfo {
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let (limit, remaining, reset) = if self.remaining_hour < self.remaining_sec {
            (self.limit_hour, self.remaining_hour, self.reset_hour)
        } else {
            (self.limit_sec, self.remaining_sec, 1)
        };
        vec![
            ("X-RateLimit-Limit-Hour", self.limit_hour.to_string()),
            (
                "X-RateLimit-Remaining-Hour",
                self.remaining_hour.to_string(),
            ),
            ("X-RateLimit-Limit-Second", self.limit_sec.to_string()),
            (
                "X-RateLimit-Remaining-Second",
                self.remaining_sec.to_string(),
            ),
            ("RateLimit-Limit", limit.to_string()),
            ("RateLimit-Remaining", remaining.to_string()),
            ("RateLimit-Reset", reset.to_string()),
        ]
    }
}

impl RateState {
    fn roll(&mut self, now_us: i64, real_sec: u64) {
        let hk = now_us.div_euclid(HOUR);
        if hk != self.hour_key {
            self.hour_key = hk;
            self.hour_used = 0;
        }
        let sk = (now_us.div_euclid(SEC), real_sec);
        if sk != self.sec_key {
            self.sec_key = sk;
            self.sec_used = 0;
        }
    }

    fn info(&self, now_us: i64, lh: u32, ls: u32, allowed: bool) -> RateInfo {
        let reset_hour = ((self.hour_key + 1) * HOUR - now_us).max(1);
        let reset_hour = (reset_hour + SEC - 1) / SEC;
        let rh = lh.saturating_sub(self.hour_used);
        let rs = ls.saturating_sub(self.sec_used);
        RateInfo {
            allowed,
            limit_hour: lh,
            remaining_hour: rh,
            limit_sec: ls,
            remaining_sec: rs,
            retry_after: if rh == 0 { reset_hour as u64 } else { 1 },
            reset_hour: reset_hour as u64,
        }
    }

    /// Count a request if the budget allows it.
    pub fn take(&mut self, now_us: i64, real_sec: u64, lh: u32, ls: u32) -> RateInfo {
        self.roll(now_us, real_sec);
        if self.hour_used >= lh || self.sec_used >= ls {
            return self.info(now_us, lh, ls, false);
        }
        self.hour_used += 1;
        self.sec_used += 1;
        self.info(now_us, lh, ls, true)
    }

    /// Current state without counting.
    pub fn peek(&mut self, now_us: i64, real_sec: u64, lh: u32, ls: u32) -> RateInfo {
        self.roll(now_us, real_sec);
        self.info(now_us, lh, ls, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hourly_window_is_fixed_clock_hour() {
        let mut r = RateState::default();
        let t0 = 10 * HOUR + HOUR - 2 * SEC;
        assert!(r.take(t0, 0, 2, 50).allowed);
        assert!(r.take(t0, 0, 2, 50).allowed);
        let i = r.take(t0, 0, 2, 50);
        assert!(!i.allowed);
        assert_eq!(i.retry_after, 2);
        assert!(r.take(t0 + 2 * SEC, 0, 2, 50).allowed);
    }
}
