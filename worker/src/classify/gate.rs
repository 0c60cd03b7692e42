//! A pool-wide adaptive limit on model calls (AIMD).
//!
//! Every model call passes [`ModelGate::acquire`], which spaces calls to the
//! current rate. A throttle halves the rate (multiplicative decrease, down to a
//! floor); each success adds a step back (additive increase, up to the
//! ceiling). An optional tokens-per-minute ceiling spaces calls by the tokens
//! they used. So a throttle storm slows the whole pool at once instead of
//! every task retrying on its own.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Ceilings and floor of the gate.
#[derive(Debug, Clone, Copy)]
pub struct GateConfig {
    /// Highest request rate, per second.
    pub max_rps: f64,
    /// Lowest rate a throttle storm can push it to, per second.
    pub min_rps: f64,
    /// Tokens-per-minute ceiling (input + output); `None`: no token limit.
    pub max_tpm: Option<u64>,
}

impl Default for GateConfig {
    /// At most 20 requests per second, at least 0.5 in a throttle storm, no token limit.
    fn default() -> Self {
        GateConfig {
            max_rps: 20.0,
            min_rps: 0.5,
            max_tpm: None,
        }
    }
}

#[derive(Debug)]
struct State {
    rate: f64,
    next: Instant,
}

/// Shared by every task of the pool.
#[derive(Debug)]
pub struct ModelGate {
    config: GateConfig,
    state: Mutex<State>,
}

impl ModelGate {
    /// A gate starting at the ceiling.
    pub fn new(config: GateConfig) -> Self {
        let config = GateConfig {
            min_rps: config.min_rps.min(config.max_rps).max(0.01),
            ..config
        };
        ModelGate {
            state: Mutex::new(State {
                rate: config.max_rps,
                next: Instant::now(),
            }),
            config,
        }
    }

    /// Waits for this call's turn.
    pub async fn acquire(&self) {
        let wait = {
            let mut s = self.state.lock().expect("gate lock");
            let now = Instant::now();
            let start = s.next.max(now);
            s.next = start + Duration::from_secs_f64(1.0 / s.rate);
            start - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// A call succeeded having used `tokens`.
    pub fn on_success(&self, tokens: u64) {
        let mut s = self.state.lock().expect("gate lock");
        let step = (self.config.max_rps / 20.0).max(0.05);
        s.rate = (s.rate + step).min(self.config.max_rps);
        if let Some(tpm) = self.config.max_tpm.filter(|&t| t > 0) {
            let debt = Duration::from_secs_f64(tokens as f64 * 60.0 / tpm as f64);
            s.next = s.next.max(Instant::now()) + debt;
        }
    }

    /// The service throttled a call.
    pub fn on_throttle(&self) {
        let mut s = self.state.lock().expect("gate lock");
        s.rate = (s.rate / 2.0).max(self.config.min_rps);
        tracing::debug!(rate = s.rate, "model throttled: pool rate halved");
    }

    /// The current rate, per second.
    pub fn rate(&self) -> f64 {
        self.state.lock().expect("gate lock").rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_halve_and_successes_restore_the_rate() {
        let gate = ModelGate::new(GateConfig {
            max_rps: 16.0,
            min_rps: 1.0,
            max_tpm: None,
        });
        gate.on_throttle();
        gate.on_throttle();
        assert_eq!(gate.rate(), 4.0);
        for _ in 0..10 {
            gate.on_throttle();
        }
        assert_eq!(gate.rate(), 1.0);
        for _ in 0..100 {
            gate.on_success(10);
        }
        assert_eq!(gate.rate(), 16.0);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_are_spaced_by_the_rate() {
        let gate = ModelGate::new(GateConfig {
            max_rps: 10.0,
            min_rps: 1.0,
            max_tpm: None,
        });
        let start = tokio::time::Instant::now();
        for _ in 0..11 {
            gate.acquire().await;
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(999) && elapsed < Duration::from_millis(1100),
            "{elapsed:?}"
        );
    }
}
