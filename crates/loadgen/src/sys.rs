//! The operating system: Ctrl-C, the file limit, a precise timer, and a process's CPU time and
//! memory. Linux has all of them (timerfd, /proc); other Unixes get tokio's timer and no server
//! readings (the report's server figures are null); elsewhere there is no file limit to raise.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Set by Ctrl-C: every loop winds down and the partial report is printed.
pub static STOP: AtomicBool = AtomicBool::new(false);
static SIGNALS: AtomicU32 = AtomicU32::new(0);

/// Whether a stop was asked.
pub fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

#[cfg(unix)]
extern "C" fn on_sigint(_: libc::c_int) {
    // Only async-signal-safe work here: atomics, and _exit on the second Ctrl-C.
    STOP.store(true, Ordering::SeqCst);
    if SIGNALS.fetch_add(1, Ordering::SeqCst) >= 1 {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// Ctrl-C (and SIGTERM) set [`STOP`]; a second one exits at once.
#[cfg(unix)]
pub fn install_signal_handlers() {
    let handler = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only touches atomics and calls _exit.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Ctrl-C sets [`STOP`]; a second one exits at once (tokio's console handler, on a thread of its own).
#[cfg(not(unix))]
pub fn install_signal_handlers() {
    let _ = std::thread::Builder::new().name("loadgen-ctrl-c".to_owned()).spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async {
            while tokio::signal::ctrl_c().await.is_ok() {
                STOP.store(true, Ordering::SeqCst);
                if SIGNALS.fetch_add(1, Ordering::SeqCst) >= 1 {
                    std::process::exit(130);
                }
            }
        });
    });
}

/// Raises the soft file limit to the hard one; returns the soft limit now in force.
#[cfg(unix)]
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// Without Unix file limits there is nothing to raise: sockets are bounded by memory, so one
/// process never has to split for them.
#[cfg(not(unix))]
pub fn raise_nofile_limit() -> u64 {
    u64::MAX
}

#[cfg(target_os = "linux")]
pub use linux::PreciseTimer;

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::Instant;

    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    /// A timer that wakes within microseconds of its deadline (a `timerfd`, with the thread's
    /// timer slack cut to 1 ns). tokio's own timers round a deadline up to the next millisecond,
    /// which would add the generator's lateness, not the server's, to every latency it measures.
    pub struct PreciseTimer {
        fd: AsyncFd<OwnedFd>,
    }

    impl PreciseTimer {
        /// A timer for this thread's event loop.
        pub fn new() -> io::Result<Self> {
            // SAFETY: plain syscalls; the fd is owned by the OwnedFd right after it is checked.
            let fd = unsafe {
                libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
                let fd = libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                OwnedFd::from_raw_fd(fd)
            };
            // SAFETY: the OwnedFd is moved into the AsyncFd, so the fd stays open as long as it does.
            Ok(Self { fd: unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE)? } })
        }

        /// Sleeps until `at`.
        pub async fn sleep_until(&self, at: Instant) -> io::Result<()> {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            let value = libc::timespec { tv_sec: left.as_secs() as libc::time_t, tv_nsec: left.subsec_nanos() as _ };
            let spec = libc::itimerspec { it_interval: zero, it_value: value };
            // SAFETY: a valid timerfd and a pointer to a local itimerspec.
            if unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } != 0 {
                return Err(io::Error::last_os_error());
            }
            loop {
                let mut guard = self.fd.readable().await?;
                let read = guard.try_io(|fd| {
                    let mut expirations = [0u8; 8];
                    // SAFETY: reads at most 8 bytes into a local buffer of 8.
                    let n = unsafe { libc::read(fd.as_raw_fd(), expirations.as_mut_ptr().cast(), expirations.len()) };
                    if n < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(())
                    }
                });
                match read {
                    Ok(result) => return result,
                    Err(_would_block) => continue,
                }
            }
        }
    }

    pub(super) fn clock_ticks() -> f64 {
        // SAFETY: sysconf has no preconditions.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 {
            t as f64
        } else {
            100.0
        }
    }
}

/// tokio's timer where there is no timerfd: deadlines round up to the next millisecond, which
/// then shows in the latencies measured (see the Linux one).
#[cfg(not(target_os = "linux"))]
pub struct PreciseTimer;

#[cfg(not(target_os = "linux"))]
impl PreciseTimer {
    /// A timer for this thread's event loop.
    pub fn new() -> io::Result<Self> {
        Ok(Self)
    }

    /// Sleeps until `at`.
    pub async fn sleep_until(&self, at: std::time::Instant) -> io::Result<()> {
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
        Ok(())
    }
}

/// utime + stime of a `/proc/PID/stat` line, in clock ticks.
#[cfg(target_os = "linux")]
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name is in parentheses and may hold spaces: fields count from after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS of a `/proc/PID/status` text, bytes.
#[cfg(target_os = "linux")]
pub fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time (user + system) a process used so far, seconds.
#[cfg(target_os = "linux")]
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = parse_stat_ticks(&stat).ok_or_else(|| io::Error::other("unreadable /proc stat"))?;
    Ok(ticks as f64 / linux::clock_ticks())
}

/// Resident memory of a process, bytes.
#[cfg(target_os = "linux")]
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status_rss(&status).ok_or_else(|| io::Error::other("no VmRSS in /proc status"))
}

/// Files a process has open: the entries of `/proc/PID/fd`.
#[cfg(target_os = "linux")]
pub fn open_files(pid: u32) -> io::Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}

/// Another process's open files: only Linux's /proc has them here.
#[cfg(not(target_os = "linux"))]
pub fn open_files(_pid: u32) -> io::Result<u64> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "open files are read from /proc (Linux only)"))
}

/// Another process's CPU time: only Linux's /proc has it here.
#[cfg(not(target_os = "linux"))]
pub fn cpu_seconds(_pid: u32) -> io::Result<f64> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "per-process CPU time is read from /proc (Linux only)"))
}

/// Another process's memory: only Linux's /proc has it here.
#[cfg(not(target_os = "linux"))]
pub fn rss_bytes(_pid: u32) -> io::Result<u64> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "per-process RSS is read from /proc (Linux only)"))
}

/// The CPU time this process used so far (all threads), seconds.
#[cfg(target_os = "linux")]
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// The CPU time this process used so far (all threads), seconds.
#[cfg(all(unix, not(target_os = "linux")))]
pub fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

/// The CPU time this process used so far: not read without Unix's getrusage (0).
#[cfg(not(unix))]
pub fn own_cpu_seconds() -> f64 {
    0.0
}

/// CPU and memory of the server processes, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Seconds of CPU used so far.
    pub cpu_seconds: f64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
}

/// Reads every server process; `None` when none is given or one cannot be read.
pub fn sample(pids: &[u32]) -> Option<Sample> {
    if pids.is_empty() {
        return None;
    }
    let mut s = Sample::default();
    for &pid in pids {
        s.cpu_seconds += cpu_seconds(pid).ok()?;
        s.rss_bytes += rss_bytes(pid).ok()?;
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[cfg(target_os = "linux")]
    #[test]
    fn parses_proc_files() {
        let stat = "1234 (my (odd) server) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t  2048 kB\nThreads:\t4\n";
        assert_eq!(parse_status_rss(status), Some(2048 * 1024));
        assert_eq!(parse_status_rss("Name: x\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert_eq!(sample(&[]), None);
        assert!(raise_nofile_limit() >= 256);
        assert!(own_cpu_seconds() >= 0.0);
        if cfg!(target_os = "linux") {
            assert!(rss_bytes(me).is_ok_and(|r| r > 0));
            assert!(cpu_seconds(me).is_ok_and(|c| c >= 0.0));
            assert!(sample(&[me]).is_some());
            let before = open_files(me).unwrap_or_else(|e| panic!("{e}"));
            // Other tests of this process open and close files too: a margin, not an exact count.
            let files: Vec<_> = (0..20).filter_map(|_| std::fs::File::open("/proc/self/status").ok()).collect();
            assert!(open_files(me).is_ok_and(|n| n >= before + 10), "the files opened are counted");
            drop(files);
        } else {
            assert_eq!(sample(&[me]), None);
        }
    }

    #[test]
    fn the_timer_wakes_at_its_deadline_not_before() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async {
            let timer = PreciseTimer::new().unwrap_or_else(|e| panic!("{e}"));
            let at = Instant::now() + std::time::Duration::from_millis(5);
            timer.sleep_until(at).await.unwrap_or_else(|e| panic!("{e}"));
            assert!(Instant::now() >= at);
            // A deadline already past returns at once.
            timer.sleep_until(at).await.unwrap_or_else(|e| panic!("{e}"));
        });
    }
}
