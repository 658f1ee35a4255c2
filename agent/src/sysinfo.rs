//! Process and machine figures for status and stats: CPU and RSS from
//! `/proc/self`, SoC temperature from `/sys/class/thermal`, the host name,
//! and the kernel clock's synchronisation state from `ntp_adjtime(2)`.
//! Each returns a neutral value when its source is missing; none fails.

use std::time::Instant;

use glasswatch_common::messages::ClockHealth;

/// Process CPU time between two calls, as a percentage of one core.
#[derive(Debug)]
pub struct CpuMeter {
    last_ticks: u64,
    last_at: Instant,
}

impl Default for CpuMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuMeter {
    pub fn new() -> CpuMeter {
        CpuMeter {
            last_ticks: cpu_ticks().unwrap_or(0),
            last_at: Instant::now(),
        }
    }

    /// CPU % since the previous call (or since creation).
    pub fn percent(&mut self) -> f64 {
        let now = Instant::now();
        let ticks = cpu_ticks().unwrap_or(self.last_ticks);
        let secs = now.duration_since(self.last_at).as_secs_f64();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let pct = if secs > 0.0 {
            ticks.saturating_sub(self.last_ticks) as f64 / hz / secs * 100.0
        } else {
            0.0
        };
        self.last_ticks = ticks;
        self.last_at = now;
        pct
    }
}

/// utime + stime of this process, in clock ticks.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; fields resume after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) are at 11 and 12 once pid and comm are gone.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident set size of this process in bytes (0 when unknown).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64;
    pages * page
}

/// The first thermal zone's temperature in °C, where the kernel has one.
pub fn temperature_c() -> Option<f64> {
    let raw = std::fs::read_to_string("/sys/class/thermal/thermal_zone0/temp").ok()?;
    let milli: f64 = raw.trim().parse().ok()?;
    Some(milli / 1000.0)
}

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The kernel clock's state from `ntp_adjtime` (read only: `modes = 0`).
pub fn clock_health() -> ClockHealth {
    // SAFETY: an all-zero timex is a valid read-only request.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: tx is a valid, writable timex.
    let state = unsafe { libc::ntp_adjtime(&mut tx) };
    if state < 0 {
        return ClockHealth {
            synchronized: false,
            est_error_us: None,
            max_error_us: None,
            source: "ntp_adjtime failed".into(),
        };
    }
    let unsync = tx.status & libc::STA_UNSYNC != 0;
    ClockHealth {
        synchronized: state != libc::TIME_ERROR && !unsync,
        est_error_us: Some(long(tx.esterror)),
        max_error_us: Some(long(tx.maxerror)),
        source: "adjtimex".into(),
    }
}

/// timex's fields are C `long`: i64 on 64-bit targets, i32 on 32-bit ARM.
#[allow(clippy::useless_conversion)]
fn long(v: libc::c_long) -> i64 {
    v.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process's CPU time from the kernel, independent of `/proc`.
    fn process_cpu() -> std::time::Duration {
        // SAFETY: an all-zero timespec is valid; clock_gettime writes it.
        let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: ts is a valid, writable timespec.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
        std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    #[test]
    fn figures_are_read_from_this_process() {
        assert!(rss_bytes() > 0);
        assert!(cpu_ticks().is_some());
        // Load a core until this process has used 200 ms of CPU (on a busy
        // machine that takes longer than 200 ms): a meter stuck at 0 fails.
        let mut m = CpuMeter::new();
        let (cpu0, wall0) = (process_cpu(), Instant::now());
        while process_cpu() - cpu0 < std::time::Duration::from_millis(200) {
            assert!(wall0.elapsed().as_secs() < 30, "no CPU time in 30 s");
            std::hint::black_box((0..1000u64).sum::<u64>());
        }
        let expected = (process_cpu() - cpu0).as_secs_f64() / wall0.elapsed().as_secs_f64() * 100.0;
        let p = m.percent();
        // The kernel counts in clock ticks (10 ms at USER_HZ 100): within
        // half of what clock_gettime saw, never 0.
        assert!(p > 0.0, "CPU meter reads {p} % after a busy loop");
        assert!(
            (expected * 0.5..=expected * 1.5 + 10.0).contains(&p),
            "CPU meter {p} %, clock_gettime {expected} %"
        );
        let c = clock_health();
        assert_eq!(c.source, "adjtimex");
    }
}
