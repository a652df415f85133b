//! The floor under the server's CPU per delivery: what this machine's kernel charges a thread for
//! one delivery's `write(2)` — one location-sized WebSocket frame to one of many loopback TCP
//! connections, with the reader on another core — when no server code runs at all.
//!
//! It replays the delivery pattern of the `light` scenario (20 sessions × 50 participants at
//! 1 Hz): 1,000 connections; every millisecond one participant's update is written to the 49 other
//! connections of its session (49,000 writes/s), for 20 s after a 2-s warm-up. The writer thread
//! is pinned to CPU 0 (where `benches/run` pins the server), the reader — one event loop, as
//! loadgen — to CPU 1. `cargo bench -p loadgen --bench send_floor [-- --json FILE]`.
//!
//! The thread's CPU time (`RUSAGE_THREAD`) and the pinning are Linux's: elsewhere the writes run
//! unpinned and the CPU per write is reported as unavailable (`null`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

const SESSIONS: usize = 20;
const PARTICIPANTS: usize = 50;
/// A V2 `location_update` push as the server sends it is ~200 bytes; the frame header adds 2.
const FRAME: usize = 202;
const WARMUP: Duration = Duration::from_secs(2);
const MEASURED: Duration = Duration::from_secs(20);
const TICK: Duration = Duration::from_millis(1);

fn main() {
    let json = std::env::args().skip_while(|a| a != "--json").nth(1);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let mut writers = Vec::with_capacity(SESSIONS * PARTICIPANTS);
    let mut readers = Vec::with_capacity(SESSIONS * PARTICIPANTS);
    for _ in 0..SESSIONS * PARTICIPANTS {
        let client = TcpStream::connect(addr).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nodelay(true).expect("nodelay");
        writers.push(server);
        readers.push(client);
    }

    let reader = std::thread::spawn(move || {
        pin_to(1);
        read_all(readers);
    });

    pin_to(0);
    let frame = [b'x'; FRAME];
    let mut writes = 0u64;
    let mut next = Instant::now();
    let mut sender = 0usize;
    let warm_until = Instant::now() + WARMUP;
    let mut window: Option<(Instant, Usage, u64)> = None;
    loop {
        let now = Instant::now();
        if window.is_none() && now >= warm_until {
            window = Some((now, Usage::of_thread(), writes));
        }
        if let Some((start, _, _)) = window {
            if now >= start + MEASURED {
                break;
            }
        }
        // One update: participant `sender` of its session, to the session's 49 others.
        let session = (sender / PARTICIPANTS) % SESSIONS;
        for other in 0..PARTICIPANTS {
            let to = session * PARTICIPANTS + other;
            if to != sender % (SESSIONS * PARTICIPANTS) {
                writers[to].write_all(&frame).expect("write");
                writes += 1;
            }
        }
        sender = (sender + 1) % (SESSIONS * PARTICIPANTS);
        next += TICK;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let (start, before, first) = window.expect("a measured window");
    let after = Usage::of_thread();
    let secs = start.elapsed().as_secs_f64();
    let n = (writes - first) as f64;
    // getrusage's user/system split is apportioned by timer ticks; only the total is exact.
    let per_write = match (before.seconds, after.seconds) {
        (Some(b), Some(a)) => Some((a - b) * 1e6 / n),
        _ => None,
    };
    let cpu = per_write.map_or_else(|| "unavailable".to_owned(), |p| format!("{p:.2} µs per write"));
    println!("send_floor: {n:.0} writes of {FRAME} bytes in {secs:.1} s ({:.0}/s); writer CPU {cpu}", n / secs);
    if let Some(path) = json {
        let per_write = per_write.map_or_else(|| "null".to_owned(), |p| format!("{p:.3}"));
        let report = format!(
            "{{\"writes\": {n:.0}, \"seconds\": {secs:.3}, \"writes_per_second\": {:.0}, \
             \"cpu_us_per_write\": {per_write}}}\n",
            n / secs
        );
        std::fs::write(&path, report).expect("write the JSON report");
    }
    drop(writers);
    reader.join().expect("the reader ends");
}

/// Reads every connection until all are closed, from one thread (an epoll loop via tokio).
fn read_all(readers: Vec<TcpStream>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("a runtime");
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for r in readers {
            r.set_nonblocking(true).expect("nonblocking");
            let r = tokio::net::TcpStream::from_std(r).expect("register");
            tasks.push(tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    r.readable().await.expect("readable");
                    match r.try_read(&mut buf) {
                        Ok(0) => return,
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => panic!("read: {e}"),
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("a reader task");
        }
    });
}

/// CPU time (user + system) of the calling thread, in seconds, where the OS tells it.
struct Usage {
    seconds: Option<f64>,
}

impl Usage {
    #[cfg(target_os = "linux")]
    fn of_thread() -> Self {
        // SAFETY: getrusage writes into the zeroed struct we own.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
        assert_eq!(rc, 0, "getrusage");
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Self { seconds: Some(secs(ru.ru_utime) + secs(ru.ru_stime)) }
    }

    /// The process's figure would add the reader thread's CPU to the writer's, so none.
    #[cfg(not(target_os = "linux"))]
    fn of_thread() -> Self {
        Self { seconds: None }
    }
}

/// Pins the calling thread to `cpu` when the machine has it (else it runs where it may).
#[cfg(target_os = "linux")]
fn pin_to(cpu: usize) {
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpu >= available {
        return;
    }
    // SAFETY: a zeroed cpu_set_t with one bit set, for the calling thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// No portable affinity call: the thread runs where the scheduler puts it.
#[cfg(not(target_os = "linux"))]
fn pin_to(_cpu: usize) {}
