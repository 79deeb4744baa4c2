//! What a process costs, from /proc: resident and proportional memory, CPU time.

use std::time::Duration;

/// Memory and CPU of a set of processes at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Resident set, bytes.
    pub rss: u64,
    /// Proportional set (shared pages split among their users), bytes.
    pub pss: u64,
    /// User plus system CPU time.
    pub cpu: Duration,
}

impl std::ops::Add for Usage {
    type Output = Usage;
    fn add(self, other: Usage) -> Usage {
        Usage {
            rss: self.rss + other.rss,
            pss: self.pss + other.pss,
            cpu: self.cpu + other.cpu,
        }
    }
}

fn clock_ticks() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

/// One process's usage; `None` when it is gone.
pub fn usage(pid: u32) -> Option<Usage> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        rollup
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces, inside parentheses).
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(Usage {
        rss: field("Rss:"),
        pss: field("Pss:"),
        cpu: Duration::from_secs_f64(ticks / clock_ticks()),
    })
}

/// The sum over processes (gone ones count nothing).
pub fn total(pids: &[u32]) -> Usage {
    pids.iter()
        .filter_map(|pid| usage(*pid))
        .fold(Usage::default(), |a, b| a + b)
}
