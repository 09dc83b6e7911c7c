//! What every side of the harness shares: options, process statistics from
//! `/proc`, CPU pinning, file-descriptor limits, percentiles and the
//! `READY` / `RESULT` lines children print for the orchestrator.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

/// Payload bytes of one raw ping-pong frame (after the 4-byte length).
pub(crate) const RAW_PAYLOAD: usize = 32;

/// Calls kept in flight by the pipelined scenario.
pub(crate) const WINDOW: usize = 1000;

/// Command-line options of a child process: `--key value` pairs and flags.
#[derive(Debug, Default, Clone)]
pub(crate) struct Opts {
    map: BTreeMap<String, String>,
}

impl Opts {
    /// Parses `--key value` pairs; a `--flag` followed by another `--` or
    /// nothing is stored as `"1"`.
    pub(crate) fn parse(args: &[String]) -> Opts {
        let mut map = BTreeMap::new();
        let mut i = 0;
        while i < args.len() {
            if let Some(key) = args[i].strip_prefix("--") {
                match args.get(i + 1) {
                    Some(v) if !v.starts_with("--") => {
                        map.insert(key.to_string(), v.clone());
                        i += 2;
                    }
                    _ => {
                        map.insert(key.to_string(), "1".into());
                        i += 1;
                    }
                }
            } else {
                i += 1;
            }
        }
        Opts { map }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    pub(crate) fn str(&self, key: &str) -> &str {
        self.get(key).unwrap_or_else(|| panic!("missing --{key}"))
    }

    pub(crate) fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> T {
        self.get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
    }

    pub(crate) fn flag(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub(crate) fn secs(&self) -> Duration {
        Duration::from_secs_f64(self.num("secs", 1.0))
    }
}

/// Pins the calling thread (and every thread it starts later) to CPU 0.
pub(crate) fn pin_cpu0() {
    let mut set = rustix::thread::CpuSet::new();
    set.set(0);
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        eprintln!("warning: sched_setaffinity failed: {}", io::Error::from(e));
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
pub(crate) fn raise_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let _ = setrlimit(Resource::Nofile, Rlimit { current: lim.maximum, ..lim });
    // `None` is unlimited.
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// CPU time consumed so far by every thread of `pid` (nanoseconds, from
/// `/proc/PID/task/*/schedstat`, exact rather than tick-based). Threads
/// that already exited are missed, so measure while they run.
pub(crate) fn cpu_ns(pid: u32) -> u64 {
    let mut total = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                total += s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    total
}

/// Resident set size of `pid` in KiB (`VmRSS`).
pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Open file descriptors of `pid`.
pub(crate) fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// CPU time of this process and of the server, measured around a phase.
pub(crate) struct CpuMeter {
    server: u32,
    me0: u64,
    server0: u64,
}

impl CpuMeter {
    pub(crate) fn start(server: u32) -> CpuMeter {
        CpuMeter { server, me0: cpu_ns(std::process::id()), server0: cpu_ns(server) }
    }

    /// (client µs per op, server µs per op).
    pub(crate) fn per_op(&self, ops: u64) -> (f64, f64) {
        let me = cpu_ns(std::process::id()).saturating_sub(self.me0);
        let server = cpu_ns(self.server).saturating_sub(self.server0);
        let ops = ops.max(1) as f64;
        (me as f64 / 1e3 / ops, server as f64 / 1e3 / ops)
    }
}

/// The `q`-quantile (0..=1) of sorted samples.
pub(crate) fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs `call` back to back: a warm-up, then for `secs`, timing each call.
/// Prints the RESULT line of the latency scenario.
pub(crate) fn measure_latency(opts: &Opts, mut call: impl FnMut()) {
    let server: u32 = opts.num("server-pid", 0);
    let secs = opts.secs();
    let warm = Instant::now();
    while warm.elapsed() < secs / 5 {
        call();
    }
    let mut samples: Vec<u64> = Vec::with_capacity(1 << 20);
    let meter = CpuMeter::start(server);
    let start = Instant::now();
    while start.elapsed() < secs {
        let t = Instant::now();
        call();
        samples.push(t.elapsed().as_nanos() as u64);
    }
    latency_result(samples, &meter);
}

/// Prints the RESULT line of the latency scenario: the samples' quantiles
/// and the CPU both processes spent per call.
fn latency_result(mut samples: Vec<u64>, meter: &CpuMeter) {
    let (cpu_c, cpu_s) = meter.per_op(samples.len() as u64);
    samples.sort_unstable();
    result(&[
        ("calls", samples.len() as f64),
        ("p50_us", quantile(&samples, 0.5) as f64 / 1e3),
        ("p99_us", quantile(&samples, 0.99) as f64 / 1e3),
        ("client_cpu_us", cpu_c),
        ("server_cpu_us", cpu_s),
    ]);
}

/// [`measure_latency`] for a peer whose calls are futures (tarpc,
/// capnp-rpc): the same loop, with `.await`.
pub(crate) async fn measure_latency_async<F: Future<Output = ()>>(opts: &Opts, mut call: impl FnMut() -> F) {
    let server: u32 = opts.num("server-pid", 0);
    let secs = opts.secs();
    let warm = Instant::now();
    while warm.elapsed() < secs / 5 {
        call().await;
    }
    let mut samples: Vec<u64> = Vec::with_capacity(1 << 20);
    let meter = CpuMeter::start(server);
    let start = Instant::now();
    while start.elapsed() < secs {
        let t = Instant::now();
        call().await;
        samples.push(t.elapsed().as_nanos() as u64);
    }
    latency_result(samples, &meter);
}

/// The pipelined scenario for a peer whose calls are futures: [`WINDOW`]
/// calls in flight, one new call as each answer arrives; prints calls/s.
pub(crate) async fn pipelined_async<F: Future<Output = ()>>(opts: &Opts, mut call: impl FnMut() -> F) {
    use futures::stream::{FuturesUnordered, StreamExt};
    let secs = opts.secs();
    let mut pending: FuturesUnordered<F> = (0..WINDOW).map(|_| call()).collect();
    let warm = Instant::now();
    while warm.elapsed() < secs / 5 {
        pending.next().await.expect("in flight");
        pending.push(call());
    }
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < secs {
        for _ in 0..100 {
            pending.next().await.expect("in flight");
            pending.push(call());
        }
        done += 100;
    }
    while pending.next().await.is_some() {
        done += 1;
    }
    result(&[("calls_per_s", done as f64 / start.elapsed().as_secs_f64())]);
}

/// Prints the line the orchestrator reads.
pub(crate) fn result(fields: &[(&str, f64)]) {
    let mut line = String::from("RESULT");
    for (k, v) in fields {
        line.push_str(&format!(" {k}={v}"));
    }
    println!("{line}");
}

/// Parses a RESULT line into its fields.
pub(crate) fn parse_result(line: &str) -> Option<BTreeMap<String, f64>> {
    let rest = line.strip_prefix("RESULT")?;
    Some(
        rest.split_whitespace()
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect(),
    )
}

/// Announces a listening server: the orchestrator waits for this line.
pub(crate) fn ready(addr: &str) {
    println!("READY {addr}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opts_pairs_and_flags() {
        let args: Vec<String> =
            ["--secs", "2.5", "--pin", "--addr", "x"].iter().map(|s| s.to_string()).collect();
        let o = Opts::parse(&args);
        assert_eq!(o.secs(), Duration::from_millis(2500));
        assert!(o.flag("pin"));
        assert_eq!(o.str("addr"), "x");
        assert!(!o.flag("quick"));
    }

    #[test]
    fn quantiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 51);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&[], 0.5), 0);
    }

    #[test]
    fn result_round_trip() {
        let line = "RESULT calls=10 p50_us=12.5";
        let m = parse_result(line).unwrap();
        assert_eq!(m["calls"], 10.0);
        assert_eq!(m["p50_us"], 12.5);
        assert!(parse_result("READY x").is_none());
    }

    #[test]
    fn proc_stats_of_self() {
        let me = std::process::id();
        assert!(rss_kib(me) > 0);
        assert!(fd_count(me) >= 3);
        assert!(cpu_ns(me) > 0);
    }
}
