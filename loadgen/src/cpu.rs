//! The server's CPU time, read from `/proc`, so that a run reports what its
//! deliveries cost.
//!
//! For a server in another process (`--server-pid`, or the one `loadgen idle`
//! starts), `/proc/PID/stat` gives its user and system time. For the in-process server,
//! `/proc/self/task/*/` gives each thread's, and the server's threads are told apart
//! by name: `writer-N`, `sequencer`, `feed-*`, `bus-*`. Times are in clock ticks
//! (`USER_HZ`, 100 a second on Linux), so a figure over a 10 s window is good to
//! about ±0.1%.

use anyhow::{anyhow, Context};

/// Clock ticks per second in `/proc` times (`USER_HZ`, fixed at 100 for user space).
const TICKS_PER_SEC: f64 = 100.0;

/// Whose CPU time to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Another process.
    Process(u32),
    /// The server threads of this process.
    InProcess,
}

/// Thread names of a tickcast server.
fn is_server_thread(name: &str) -> bool {
    name.starts_with("writer-")
        || name == "sequencer"
        || name.starts_with("feed-")
        || name.starts_with("bus-")
}

/// User + system time of one `/proc/.../stat` line, in seconds.
fn stat_seconds(stat: &str) -> anyhow::Result<f64> {
    // The command name (field 2) is in parentheses and may hold spaces: count fields
    // after its closing parenthesis. utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("malformed stat line"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields
        .get(11)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no utime"))?;
    let stime: f64 = fields
        .get(12)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no stime"))?;
    Ok((utime + stime) / TICKS_PER_SEC)
}

impl Probe {
    /// CPU seconds used so far.
    pub fn seconds(self) -> anyhow::Result<f64> {
        match self {
            Probe::Process(pid) => {
                let path = format!("/proc/{pid}/stat");
                let stat = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {path}"))?;
                stat_seconds(&stat)
            }
            Probe::InProcess => {
                let mut total = 0.0;
                for entry in
                    std::fs::read_dir("/proc/self/task").context("cannot list /proc/self/task")?
                {
                    let dir = entry?.path();
                    let Ok(name) = std::fs::read_to_string(dir.join("comm")) else {
                        continue; // the thread ended
                    };
                    if !is_server_thread(name.trim()) {
                        continue;
                    }
                    if let Ok(stat) = std::fs::read_to_string(dir.join("stat")) {
                        total += stat_seconds(&stat)?;
                    }
                }
                Ok(total)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime_past_a_name_with_spaces() {
        let line = "4242 (writer 0) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 100 0 0";
        assert!((stat_seconds(line).unwrap() - 3.0).abs() < 1e-9);
        assert!(stat_seconds("garbage").is_err());
    }

    #[test]
    fn server_threads_by_name() {
        for n in ["writer-0", "sequencer", "feed-synthetic", "bus-edge"] {
            assert!(is_server_thread(n), "{n}");
        }
        for n in ["loadgen-0", "loadgen", "tokio-runtime-w"] {
            assert!(!is_server_thread(n), "{n}");
        }
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        let me = Probe::Process(std::process::id()).seconds().unwrap();
        assert!(me >= 0.0);
        assert!(Probe::InProcess.seconds().unwrap() >= 0.0);
    }
}
