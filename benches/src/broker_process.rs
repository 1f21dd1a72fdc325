//! The broker's own cost, seen from /proc: CPU time and memory of a broker process that kbench did
//! not start (`kbench run --broker-pid PID`, `kbench compare --a-pid PID --b-pid PID`), sampled at the
//! boundaries of a run's phases and turned into CPU per MB and per Produce request.
//!
//! Sources (Linux proc(5)):
//! - `/proc/PID/stat`: one line, `PID (COMM) STATE PPID PGRP ...`. COMM is the thread name (at most
//!   15 bytes) and may itself hold spaces and parentheses, so the fields after it are counted from the
//!   *last* `)`. Fields 14 `utime` and 15 `stime` (1-based, PID = 1) are the CPU time of all the
//!   process's threads, live and exited, in clock ticks of `sysconf(_SC_CLK_TCK)` (100 on Linux):
//!   every sample is 10 ms coarse, so a phase needs a few seconds of broker CPU to be read to 1 %.
//! - `/proc/PID/status`: `VmRSS:` and `VmHWM:` (peak resident set), in kB.
//!
//! Phases (see `run.rs` for the timeline). CPU is sampled when the producers are released (`start`),
//! when the last producer has flushed (`produce_end`), just before catch-up consumers are created
//! (`consume_start`; librdkafka starts fetching at their `assign`), when the consumers have read as
//! many messages as were acknowledged (`consume_end`), and when the run ends (`end`). The two ends are
//! taken by the thread that completes the phase ([`PhaseEnd`]), not at the collector's next one-second
//! tick, so idle time after a phase is not charged to it. Figures derived from them ([`BrokerCpu`]):
//! - whole run: `start` -> the last phase end (`end` when a phase end was never reached), over the MB
//!   produced plus the MB consumed (the figure `benches/baseline.py` has always reported);
//! - produce phase, only when no consumer ran during it (catch-up mode, or `--consumers 0`): CPU over
//!   the MB produced, over the Produce requests the producers sent (librdkafka statistics, broker
//!   `req.Produce`), and over the messages acknowledged;
//! - consume phase, catch-up mode only: CPU over the MB consumed.
//!
//! MB are 10^6 bytes of record values, as in kbench's MB/s; the phase CPU includes whatever else the
//! broker did meanwhile (metadata, transaction requests, background work such as segment rolls).

mod accounting;

pub use accounting::{account, BrokerCpu, BrokerMeter, PhaseEnd, Samples, Volumes};

use std::fmt;

/// CPU time of a process, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTicks {
    pub user: u64,
    pub system: u64,
}

impl CpuTicks {
    pub fn total(self) -> u64 {
        self.user + self.system
    }
}

/// The fields of `/proc/PID/stat` that kbench reads.
#[derive(Debug, PartialEq, Eq)]
pub struct StatLine<'a> {
    pub pid: u32,
    pub comm: &'a str,
    pub cpu: CpuTicks,
}

/// Why /proc could not tell.
#[derive(Debug, PartialEq, Eq)]
pub enum ProcError {
    /// The file could not be read (no such process, or no permission).
    Unreadable { path: String, reason: String },
    /// The file was read but is not in the expected format.
    Malformed { path: String, what: &'static str },
    /// The stat file names another process than the one asked for.
    OtherProcess { asked: u32, found: u32 },
}

impl fmt::Display for ProcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcError::Unreadable { path, reason } => write!(f, "{path}: {reason}"),
            ProcError::Malformed { path, what } => write!(f, "{path}: malformed ({what})"),
            ProcError::OtherProcess { asked, found } => {
                write!(f, "/proc/{asked}/stat describes process {found}")
            }
        }
    }
}

/// Parses one `/proc/PID/stat` line. COMM is what lies between the first `(` and the last `)`.
pub fn parse_stat(line: &str) -> Result<StatLine<'_>, &'static str> {
    let open = line.find('(').ok_or("no '(' before the command name")?;
    let close = line.rfind(')').ok_or("no ')' after the command name")?;
    if close < open {
        return Err("')' before '('");
    }
    let pid = line[..open]
        .trim()
        .parse()
        .map_err(|_| "the process id is not a number")?;
    let comm = &line[open + 1..close];
    // After ")": state(3) ppid(4) pgrp(5) session(6) tty_nr(7) tpgid(8) flags(9) minflt(10)
    // cminflt(11) majflt(12) cmajflt(13) utime(14) stime(15).
    let mut rest = line[close + 1..].split_ascii_whitespace().skip(11);
    let mut tick_field =
        |name| -> Result<u64, &'static str> { rest.next().ok_or(name)?.parse().map_err(|_| name) };
    let user = tick_field("utime missing or not a number")?;
    let system = tick_field("stime missing or not a number")?;
    Ok(StatLine {
        pid,
        comm,
        cpu: CpuTicks { user, system },
    })
}

/// The kB value of a `/proc/PID/status` line such as `VmHWM:   123456 kB`.
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.split_ascii_whitespace().next()?.parse().ok()
    })
}

/// Resident memory of a process, kB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
}

/// A running process whose CPU time and memory kbench samples.
#[derive(Debug)]
pub struct BrokerProcess {
    pid: u32,
    comm: String,
    ticks_per_second: u64,
}

impl BrokerProcess {
    /// Checks that `/proc/PID/stat` can be read and parsed now.
    pub fn open(pid: u32) -> Result<BrokerProcess, ProcError> {
        // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let mut process = BrokerProcess {
            pid,
            comm: String::new(),
            ticks_per_second: if ticks > 0 { ticks as u64 } else { 100 },
        };
        let text = process.read("stat")?;
        let stat = parse_stat(&text).map_err(|what| ProcError::Malformed {
            path: process.path("stat"),
            what,
        })?;
        if stat.pid != pid {
            return Err(ProcError::OtherProcess {
                asked: pid,
                found: stat.pid,
            });
        }
        process.comm = stat.comm.to_string();
        Ok(process)
    }

    fn path(&self, file: &str) -> String {
        format!("/proc/{}/{file}", self.pid)
    }

    /// The file's text; a name that is not UTF-8 (COMM is any bytes) is read lossily.
    fn read(&self, file: &str) -> Result<String, ProcError> {
        let path = self.path(file);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) => Err(ProcError::Unreadable {
                path,
                reason: e.to_string(),
            }),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// user + system CPU time of all the process's threads so far.
    pub fn cpu(&self) -> Result<CpuTicks, ProcError> {
        let text = self.read("stat")?;
        parse_stat(&text)
            .map(|stat| stat.cpu)
            .map_err(|what| ProcError::Malformed {
                path: self.path("stat"),
                what,
            })
    }

    pub fn memory(&self) -> Result<Memory, ProcError> {
        let text = self.read("status")?;
        let field = |key, what| {
            parse_status_kib(&text, key).ok_or(ProcError::Malformed {
                path: self.path("status"),
                what,
            })
        };
        Ok(Memory {
            rss_kib: field("VmRSS", "no VmRSS")?,
            peak_rss_kib: field("VmHWM", "no VmHWM")?,
        })
    }

    fn seconds(&self, ticks: u64) -> f64 {
        ticks as f64 / self.ticks_per_second as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real line (Linux 6.x) with the fields after stime cut short.
    const LINE: &str = "4242 (broker) S 1 4242 4242 0 -1 4194560 9187 0 3 0 1234 567 0 0 20 0 3 0";

    #[test]
    fn stat_fields() {
        let stat = parse_stat(LINE).unwrap();
        assert_eq!(stat.pid, 4242);
        assert_eq!(stat.comm, "broker");
        assert_eq!(
            stat.cpu,
            CpuTicks {
                user: 1234,
                system: 567
            }
        );
        assert_eq!(stat.cpu.total(), 1801);
    }

    #[test]
    fn comm_with_spaces_and_parentheses() {
        let line = "77 (my (odd) ) name) R 1 77 77 0 -1 0 0 0 0 0 10 20 0 0 20 0 1 0";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.pid, 77);
        assert_eq!(stat.comm, "my (odd) ) name");
        assert_eq!(
            stat.cpu,
            CpuTicks {
                user: 10,
                system: 20
            }
        );
        // A comm that looks like numbers must not shift the fields either.
        let line = "78 (1 2 3 4 5 6 7 8 9 10 11 12) S 1 2 3 4 5 6 7 8 9 10 40 50";
        assert_eq!(
            parse_stat(line).unwrap().cpu,
            CpuTicks {
                user: 40,
                system: 50
            }
        );
        let line = "79 () S 1 2 3 4 5 6 7 8 9 10 1 2";
        assert_eq!(parse_stat(line).unwrap().comm, "");
    }

    #[test]
    fn malformed_stat_lines_are_refused() {
        assert!(parse_stat("").is_err());
        assert!(parse_stat("12 broker S 1").is_err());
        assert!(parse_stat("x (broker) S 1 2 3 4 5 6 7 8 9 10 1 2").is_err());
        assert!(parse_stat("12 )broker( S 1 2 3 4 5 6 7 8 9 10 1 2").is_err());
        // Cut before stime; a negative or non-numeric tick count.
        assert!(parse_stat("12 (broker) S 1 2 3 4 5 6 7 8 9 10 1").is_err());
        assert!(parse_stat("12 (broker) S 1 2 3 4 5 6 7 8 9 10 -1 2").is_err());
        assert!(parse_stat("12 (broker) S 1 2 3 4 5 6 7 8 9 10 1 x").is_err());
    }

    #[test]
    fn status_lines() {
        let status = "Name:\tbroker\nVmPeak:\t  900 kB\nVmHWM:\t   5120 kB\nVmRSS:\t    4096 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(5120));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(4096));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        // A key that is a prefix of another is not confused with it.
        assert_eq!(parse_status_kib("VmRSSx:\t1 kB\n", "VmRSS"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let me = BrokerProcess::open(std::process::id()).unwrap();
        assert!(!me.comm.is_empty());
        // Burn some CPU so the counters move by at least a tick.
        let before = me.cpu().unwrap();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while me.cpu().unwrap().total() == before.total() && t.elapsed().as_secs() < 5 {
            x = x.wrapping_add(std::hint::black_box(x) ^ 0x9E37);
        }
        assert!(me.cpu().unwrap().total() > before.total());
        let memory = me.memory().unwrap();
        assert!(memory.peak_rss_kib >= memory.rss_kib && memory.rss_kib > 0);
        assert!(matches!(
            BrokerProcess::open(u32::MAX),
            Err(ProcError::Unreadable { .. })
        ));
    }
}
