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
