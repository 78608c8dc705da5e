//! The simulated clock.

use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use crate::config::ClockConfig;

/// Simulated time: `start + speed * (tokio elapsed) + advanced`.
#[derive(Debug)]
pub struct SimClock {
    start_us: i64,
    speed: f64,
    base: Instant,
    advanced_us: Mutex<i64>,
}

impl SimClock {
    pub fn new(cfg: &ClockConfig) -> Self {
        Self {
            start_us: (cfg.start.unix_timestamp_nanos() / 1000) as i64,
            speed: cfg.speed,
            base: Instant::now(),
            advanced_us: Mutex::new(0),
        }
    }

    /// Simulated now, in microseconds since the Unix epoch.
    pub fn now_us(&self) -> i64 {
        let real = self.base.elapsed().as_micros() as f64 * self.speed;
        let adv = *self.advanced_us.lock().unwrap_or_else(|e| e.into_inner());
        self.start_us + real as i64 + adv
    }

    pub fn now(&self) -> OffsetDateTime {
        crate::util::to_odt(self.now_us())
    }

    pub fn advance(&self, d: Duration) {
        let mut g = self.advanced_us.lock().unwrap_or_else(|e| e.into_inner());
        *g += d.as_micros() as i64;
    }

    /// Real (tokio) whole seconds since start; used so the per-second window also
    /// turns over when the simulated clock is frozen.
    pub fn real_second(&self) -> u64 {
        self.base.elapsed().as_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn speed_scales_tokio_time_and_advance_adds() {
        let c = SimClock::new(&ClockConfig {
            speed: 60.0,
            ..ClockConfig::default()
        });
        let t0 = c.now_us();
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(c.now_us() - t0, 120_000_000);
        c.advance(Duration::from_secs(5));
        assert_eq!(c.now_us() - t0, 125_000_000);
        assert_eq!(c.real_second(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn default_clock_is_frozen() {
        let c = SimClock::new(&ClockConfig::default());
        let t0 = c.now();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(c.now(), t0);
        assert_eq!(t0, time::macros::datetime!(2026-11-01 00:00:00 UTC));
    }
}
