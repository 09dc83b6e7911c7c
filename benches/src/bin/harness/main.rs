//! The benchmark harness: measures netref next to a raw socket, RPyC,
//! tarpc and capnp-rpc in one run, each client and server in its own process, and reports
//! ratios (which hold on a noisy shared machine where absolute numbers do
//! not). See `benches/README.md`.
//!
//! ```text
//! harness [--quick] [--secs S] [--only SCENARIO[,SCENARIO]]   run everything, write target/bench-report.{md,svg}
//!                                                              (a quick run: target/bench-report-quick.{md,svg})
//! harness server --impl I --transport tcp|unix [--path P] [--pin]
//! harness client --impl I --scenario S --addr A --server-pid N [--secs S] [--pin] ...
//! ```

mod capnp_side;
mod common;
mod netref_side;
mod raw;
mod report;
mod tarpc_side;
mod tokio_side;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Opts;
use report::{Cmp, Row, Target};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = Opts::parse(&args);
    if opts.flag("pin") {
        common::pin_cpu0();
    }
    let outcome = match args.first().map(String::as_str) {
        Some("server") => child_server(&opts),
        Some("client") => child_client(&opts),
        Some("--help") | Some("-h") => {
            println!("{}", USAGE);
            Ok(())
        }
        _ => orchestrate(&opts),
    };
    if let Err(e) = outcome {
        eprintln!("harness: {e}");
        std::process::exit(1);
    }
}

const USAGE: &str = "harness [--quick] [--secs S] [--only latency,pipelined,inflight,events,payload,scale]

Runs every scenario with netref and its baselines (client and server in
separate processes) and writes target/bench-report.md and .svg.
--quick: a smoke run of a few seconds, netref and raw only.";

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

fn child_server(opts: &Opts) -> BoxResult<()> {
    match opts.str("impl") {
        "raw" => raw::server(opts)?,
        "tarpc" => tarpc_side::server(opts)?,
        "capnp" => capnp_side::server(opts)?,
        _ => netref_side::server(opts)?,
    }
    Ok(())
}

fn child_client(opts: &Opts) -> BoxResult<()> {
    match opts.str("impl") {
        "raw" => raw::client(opts)?,
        "tarpc" => tarpc_side::client(opts)?,
        "capnp" => capnp_side::client(opts)?,
        _ => netref_side::client(opts)?,
    }
    Ok(())
}

// ---- orchestration ---------------------------------------------------------

/// What the orchestrator knows about this run.
struct Env {
    exe: PathBuf,
    python: Option<PathBuf>,
    script: PathBuf,
    sock_dir: PathBuf,
    secs: f64,
    notes: Vec<String>,
    counter: usize,
    /// Where the next client's stderr goes (the job's log).
    client_stderr: Option<Stdio>,
}

/// One measurement: a server process and a client process.
struct Job<'a> {
    server: &'a str,
    client: &'a str,
    scenario: &'a str,
    transport: &'a str,
    pin: bool,
    args: Vec<(&'a str, String)>,
}

type Fields = BTreeMap<String, f64>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("benches/ has a parent").to_path_buf()
}

impl Env {
    fn command(&self, side: &str, imp: &str) -> Option<Command> {
        if imp == "rpyc" {
            let mut c = Command::new(self.python.as_ref()?);
            c.arg(&self.script).arg(side);
            Some(c)
        } else {
            let mut c = Command::new(&self.exe);
            c.args([side, "--impl", imp]);
            Some(c)
        }
    }

    /// Runs one job; `None` (with a note) when it could not be measured.
    fn run(&mut self, job: &Job<'_>) -> Option<Fields> {
        self.counter += 1;
        let extra: Vec<&str> = job
            .args
            .iter()
            .filter(|(k, _)| matches!(*k, "via" | "variant" | "expiry"))
            .map(|(_, v)| v.as_str())
            .collect();
        let label = format!(
            "{} {}/{} {} {} {}",
            job.scenario,
            job.server,
            job.client,
            extra.join(" "),
            job.transport,
            if job.pin { "pinned" } else { "" }
        );
        let path = self.sock_dir.join(format!("s{}.sock", self.counter));
        let mut server = self.command("server", job.server)?;
        server.args(["--transport", job.transport]).arg("--path").arg(&path);
        if job.pin {
            server.arg("--pin");
        }
        // Children's stderr goes to one log per job (tracebacks of a failed
        // baseline would drown the progress lines).
        let log = self.sock_dir.join(format!("job{}.log", self.counter));
        let (out, err) = match std::fs::File::create(&log).and_then(|f| Ok((f.try_clone()?, f))) {
            Ok((a, b)) => (Stdio::from(a), Stdio::from(b)),
            Err(_) => (Stdio::inherit(), Stdio::inherit()),
        };
        server.stderr(out);
        self.client_stderr = Some(err);
        let mut server = match server.stdout(Stdio::piped()).stdin(Stdio::null()).spawn() {
            Ok(s) => s,
            Err(e) => {
                self.notes.push(format!("{label}: could not start the server: {e}"));
                return None;
            }
        };
        let result = self.run_client(job, &mut server);
        let _ = server.kill();
        let _ = server.wait();
        let _ = std::fs::remove_file(&path);
        match result {
            Ok(f) => {
                eprintln!("  {label:<40} {}", summary(&f));
                Some(f)
            }
            Err(e) => {
                let last = std::fs::read_to_string(&log)
                    .ok()
                    .and_then(|l| {
                        l.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_string())
                    })
                    .unwrap_or_default();
                eprintln!("  {label:<40} FAILED: {e}: {last} (log: {})", log.display());
                self.notes.push(format!("{label}: {e}: {last}"));
                None
            }
        }
    }

    /// Runs an RPyC job with 1000 calls in flight; if that fails (RPyC
    /// deadlocks over Unix sockets: its blocking sends fill both socket
    /// buffers), again with 100, saying so.
    fn run_rpyc_windowed(&mut self, job: &Job<'_>) -> Option<Fields> {
        if let Some(f) = self.run(job) {
            return Some(f);
        }
        let mut args = job.args.clone();
        args.push(("window", "100".to_string()));
        let retry = Job { args, ..*job };
        let mut f = self.run(&retry)?;
        self.notes.push(format!(
            "RPyC {} over {} failed with 1000 calls in flight (its blocking send deadlocks once both \
             socket buffers fill) and was measured with 100 in flight.",
            job.scenario, job.transport
        ));
        f.insert("window".into(), 100.0);
        Some(f)
    }

    fn run_client(&mut self, job: &Job<'_>, server: &mut Child) -> BoxResult<Fields> {
        let stdout = server.stdout.take().ok_or("no server stdout")?;
        let lines = spawn_reader(stdout);
        let addr = loop {
            match lines.recv_timeout(Duration::from_secs(30)) {
                Ok(l) => {
                    if let Some(a) = l.strip_prefix("READY ") {
                        break a.to_string();
                    }
                }
                Err(_) => return Err("the server never became ready".into()),
            }
        };
        let mut client = self.command("client", job.client).ok_or("no interpreter")?;
        client.args(["--scenario", job.scenario, "--addr", &addr]);
        client.args(["--server-pid", &server.id().to_string(), "--secs", &self.secs.to_string()]);
        for (k, v) in &job.args {
            client.arg(format!("--{k}")).arg(v);
        }
        if job.pin {
            client.arg("--pin");
        }
        if let Some(err) = self.client_stderr.take() {
            client.stderr(err);
        }
        let mut child = client.stdout(Stdio::piped()).stdin(Stdio::null()).spawn()?;
        let out = spawn_reader(child.stdout.take().ok_or("no client stdout")?);
        let deadline = Instant::now() + Duration::from_secs_f64(40.0 + self.secs * 20.0);
        let mut fields = None;
        loop {
            match out.recv_timeout(Duration::from_millis(50)) {
                Ok(l) => {
                    if let Some(f) = common::parse_result(&l) {
                        fields = Some(f);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the client timed out".into());
            }
        }
        let status = child.wait()?;
        match fields {
            Some(f) => Ok(f),
            None => Err(format!("the client printed no result ({status})").into()),
        }
    }
}

fn spawn_reader(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn summary(f: &Fields) -> String {
    f.iter().map(|(k, v)| format!("{k}={}", report::fmt_num(*v))).collect::<Vec<_>>().join(" ")
}

/// Makes (once) a venv under target/ with RPyC 6.x; `None` with a note if
/// python3 or the install is missing.
fn python_env(target: &Path, notes: &mut Vec<String>) -> Option<PathBuf> {
    let venv = target.join("bench-venv");
    let python = venv.join("bin/python");
    let has_rpyc = |p: &Path| {
        Command::new(p)
            .args(["-c", "import rpyc, sys; sys.exit(0 if rpyc.__version__.startswith('6.') else 1)"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.exists() && has_rpyc(&python) {
        return Some(python);
    }
    if Command::new("python3").arg("--version").output().is_err() {
        notes.push("python3 is not installed: the RPyC baselines are skipped.".into());
        return None;
    }
    eprintln!("creating {} with RPyC 6.x ...", venv.display());
    let made = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "rpyc>=6,<7"])
            .status()
            .is_ok_and(|s| s.success());
    if made && has_rpyc(&python) {
        Some(python)
    } else {
        notes.push("could not create the venv or install rpyc>=6,<7: the RPyC baselines are skipped.".into());
        None
    }
}

fn python_rpyc_version(python: &Path) -> String {
    Command::new(python)
        .args(["-c", "import rpyc, sys; print(rpyc.__version__, sys.version.split()[0])"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn orchestrate(opts: &Opts) -> BoxResult<()> {
    let quick = opts.flag("quick");
    let root = workspace();
    let target = root.join("target");
    // Sockets and per-job logs of this run (emptied first).
    let sock_dir = target.join("bench-run");
    let _ = std::fs::remove_dir_all(&sock_dir);
    std::fs::create_dir_all(&sock_dir)?;
    let mut notes = Vec::new();
    let python = if quick { None } else { python_env(&target, &mut notes) };
    let mut env = Env {
        exe: std::env::current_exe()?,
        python: python.clone(),
        script: root.join("benches/python/rpyc_bench.py"),
        sock_dir,
        secs: opts.num("secs", if quick { 0.2 } else { 1.5 }),
        notes,
        counter: 0,
        client_stderr: None,
    };
    let only: Vec<String> =
        opts.get("only").map(|o| o.split(',').map(String::from).collect()).unwrap_or_default();
    let want = |s: &str| only.is_empty() || only.iter().any(|o| o == s);
    let transports: &[&str] = if quick { &["tcp"] } else { &["tcp", "unix"] };
    let with_baselines = !quick;
    let started = Instant::now();
    let mut res: BTreeMap<String, Fields> = BTreeMap::new();
    let mut put = |k: String, f: Option<Fields>| {
        if let Some(f) = f {
            res.insert(k, f);
        }
    };
    let job = |server, client, scenario, transport, pin, args| Job {
        server,
        client,
        scenario,
        transport,
        pin,
        args,
    };

    for &t in transports {
        if want("latency") {
            eprintln!("== sync call latency over {t}");
            for pin in [false, true] {
                let p = if pin { "pinned" } else { "unpinned" };
                // The typed and the dynamic call in the order A B B A, each
                // row taking the better of its two runs: which of two jobs
                // runs second changed their ratio by up to 1.3x (Unix, pinned).
                for (n, imp) in ["netref-typed", "netref", "netref", "netref-typed"].into_iter().enumerate() {
                    let run = if n < 2 { "" } else { "/again" };
                    put(
                        format!("latency/{t}/{p}/{imp}{run}"),
                        env.run(&job(imp, imp, "latency", t, pin, vec![])),
                    );
                }
                put(format!("latency/{t}/{p}/raw"), env.run(&job("raw", "raw", "latency", t, pin, vec![])));
                if t == "tcp" {
                    let tls = "netref-tls";
                    put(format!("latency/{t}/{p}/{tls}"), env.run(&job(tls, tls, "latency", t, pin, vec![])));
                }
                if with_baselines {
                    for v in ["cached", "attr"] {
                        let args = vec![("variant", v.to_string())];
                        put(
                            format!("latency/{t}/{p}/rpyc-{v}"),
                            env.run(&job("rpyc", "rpyc", "latency", t, pin, args)),
                        );
                    }
                    for peer in ["tarpc", "capnp"] {
                        put(
                            format!("latency/{t}/{p}/{peer}"),
                            env.run(&job(peer, peer, "latency", t, pin, vec![])),
                        );
                    }
                    // Across languages, in RPyC's dialect: netref's client
                    // of Python's server, and Python's client of netref's.
                    put(
                        format!("latency/{t}/{p}/netref-to-python"),
                        env.run(&job("rpyc", "netref-rpyc", "latency", t, pin, vec![])),
                    );
                    let cached = vec![("variant", "cached".to_string())];
                    put(
                        format!("latency/{t}/{p}/python-to-netref"),
                        env.run(&job("netref-rpyc", "rpyc", "latency", t, pin, cached)),
                    );
                }
            }
        }
        if want("pipelined") {
            eprintln!("== pipelined async calls over {t}");
            for (imp, _) in MODES {
                put(format!("pipelined/{t}/{imp}"), env.run(&job(imp, imp, "pipelined", t, false, vec![])));
            }
            if with_baselines {
                put(
                    format!("pipelined/{t}/rpyc"),
                    env.run_rpyc_windowed(&job("rpyc", "rpyc", "pipelined", t, false, vec![])),
                );
                for peer in ["tarpc", "capnp"] {
                    put(
                        format!("pipelined/{t}/{peer}"),
                        env.run(&job(peer, peer, "pipelined", t, false, vec![])),
                    );
                }
                put(
                    format!("pipelined/{t}/netref-to-python"),
                    env.run_rpyc_windowed(&job("rpyc", "netref-rpyc", "pipelined", t, false, vec![])),
                );
                put(
                    format!("pipelined/{t}/python-to-netref"),
                    env.run_rpyc_windowed(&job("netref-rpyc", "rpyc", "pipelined", t, false, vec![])),
                );
            }
        }
        if want("inflight") && t == "tcp" {
            eprintln!("== 20,000 async calls in flight, with and without an expiry, over {t}");
            for (key, expiry) in [("plain", "0"), ("expiring", "3600")] {
                let args = vec![("window", "20000".to_string()), ("expiry", expiry.to_string())];
                put(
                    format!("inflight/{t}/{key}"),
                    env.run(&job("netref", "netref", "inflight", t, false, args)),
                );
            }
        }
        if want("events") {
            eprintln!("== server-to-client events over {t}");
            let batch = if quick { 5_000 } else { 50_000 };
            for (imp, _) in MODES {
                for via in ["bg", "mio", "polling", "calloop", "glib"] {
                    let args = vec![("via", via.to_string()), ("batch", batch.to_string())];
                    let key = format!("events/{t}/{imp}/{via}");
                    put(key, env.run(&job(imp, imp, "events", t, false, args)));
                }
            }
            if with_baselines {
                let args = vec![("batch", "5000".to_string())];
                let capnp_args = vec![("batch", batch.to_string())];
                put(
                    format!("events/{t}/capnp"),
                    env.run(&job("capnp", "capnp", "events", t, false, capnp_args)),
                );
                let r = env.run_rpyc_windowed(&job("rpyc", "rpyc", "events", t, false, args.clone()));
                put(format!("events/{t}/rpyc"), r);
                let mut bg = args.clone();
                bg.push(("via", "bg".to_string()));
                let r = env.run_rpyc_windowed(&job("rpyc", "netref-rpyc", "events", t, false, bg));
                put(format!("events/{t}/netref-to-python"), r);
                let r = env.run_rpyc_windowed(&job("netref-rpyc", "rpyc", "events", t, false, args));
                put(format!("events/{t}/python-to-netref"), r);
            }
        }
        if want("payload") {
            eprintln!("== 1 MiB echo over {t}");
            put(
                format!("payload/{t}/netref"),
                env.run(&job("netref", "netref", "payload", t, false, vec![])),
            );
            put(format!("payload/{t}/raw"), env.run(&job("raw", "raw", "payload", t, false, vec![])));
            if t == "tcp" {
                let tls = "netref-tls";
                put(format!("payload/{t}/{tls}"), env.run(&job(tls, tls, "payload", t, false, vec![])));
            }
            if with_baselines {
                put(format!("payload/{t}/rpyc"), env.run(&job("rpyc", "rpyc", "payload", t, false, vec![])));
            }
        }
    }
    if want("scale") {
        eprintln!("== scale: one single-threaded server");
        let (idle, active) = if quick { (200, 20) } else { (10_000, 1_000) };
        for server in ["netref-mio", "netref-polling"] {
            let args = vec![("idle", idle.to_string()), ("active", active.to_string())];
            put(format!("scale/{server}"), env.run(&job(server, "netref", "scale", "tcp", false, args)));
        }
    }

    let rows = rows(&res, transports, idle_wanted(quick));
    let date = Command::new("date")
        .arg("+%Y-%m-%d %H:%M %Z")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut md = String::new();
    md.push_str(&format!(
        "# netref benchmark report\n\n{date}, {} run of {:.0} s ({} s per measurement), {} CPUs, load average before the report: {}\n\n",
        if quick { "quick" } else { "full" },
        started.elapsed().as_secs_f64(),
        env.secs,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    ));
    if let Some(p) = &python {
        md.push_str(&format!("RPyC and Python: {}.\n\n", python_rpyc_version(p)));
    }
    md.push_str(&report::markdown(&rows));
    let (met, missed): (Vec<&Row>, Vec<&Row>) =
        rows.iter().filter(|r| r.target.is_some()).partition(|r| r.target.as_ref().is_some_and(Target::met));
    md.push_str(&format!("\nTargets: {} met, {} missed.\n", met.len(), missed.len()));
    for r in &missed {
        md.push_str(&format!("- missed: {}\n", r.scenario));
    }
    if !env.notes.is_empty() {
        md.push_str("\nNotes:\n");
        for n in &env.notes {
            md.push_str(&format!("- {n}\n"));
        }
    }
    println!("{md}");
    // A quick run (CI's) leaves the report of the last full run alone.
    let name = if quick { "bench-report-quick" } else { "bench-report" };
    std::fs::write(target.join(format!("{name}.md")), &md)?;
    std::fs::write(
        target.join(format!("{name}.svg")),
        report::svg(&rows, &format!("netref benchmarks, {date}")),
    )?;
    eprintln!("wrote {} and {name}.svg", target.join(format!("{name}.md")).display());
    if rows.iter().all(|r| r.netref.is_none()) {
        return Err("no netref measurement succeeded".into());
    }
    Ok(())
}

fn idle_wanted(quick: bool) -> usize {
    if quick {
        200
    } else {
        10_000
    }
}

/// netref's ways of writing, as its client and server impls and their rows'
/// labels: the defaults (coalescing), explicit batching, one write per
/// message.
const MODES: [(&str, &str); 3] = [
    ("netref", "coalesced by default"),
    ("netref-batched", "explicit batching"),
    ("netref-at-once", "one write per message"),
];

/// A TLS row, with what TLS costs beside plain netref of the same run.
fn tls_note(mut r: Row, plain: Option<f64>) -> Row {
    if let (Some(tls), Some(plain)) = (r.netref, plain) {
        r.note = Some(format!("netref over TLS ÷ plain netref: {:.2}x", tls / plain));
    }
    r
}

/// Builds the table rows from the measurements.
fn rows(res: &BTreeMap<String, Fields>, transports: &[&str], idle_wanted: usize) -> Vec<Row> {
    let get = |k: &str, f: &str| res.get(k).and_then(|m| m.get(f)).copied();
    let sum = |k: &str| Some(get(k, "client_cpu_us")? + get(k, "server_cpu_us")?);
    let tname = |t: &str| if t == "tcp" { "TCP" } else { "Unix" };
    let target = |what: &str, value: Option<f64>, cmp, threshold| {
        value.map(|value| Target { what: what.into(), value, cmp, threshold, unit: "x" })
    };
    let mut rows = Vec::new();
    for &t in transports {
        for p in ["unpinned", "pinned"] {
            let k = |imp: &str| format!("latency/{t}/{p}/{imp}");
            for (q, label) in [("p50_us", "p50"), ("p99_us", "p99")] {
                let mut r = Row::new(format!("sync latency {label}, {}, {p}", tname(t)), "µs");
                r.netref = get(&k("netref"), q);
                r.raw = get(&k("raw"), q);
                r.rpyc = get(&k("rpyc-cached"), q);
                r.rpyc_attr = get(&k("rpyc-attr"), q);
                r.tarpc = get(&k("tarpc"), q);
                r.capnp = get(&k("capnp"), q);
                let mut r = r.with_ratios();
                if p == "pinned" && q == "p50_us" {
                    r.target = target("netref/raw", r.ratio("raw"), Cmp::AtMost, 1.3);
                }
                rows.push(r);
            }
            if t == "tcp" {
                let mut r = Row::new(format!("sync latency p50 over TLS, TCP, {p} (raw: plain TCP)"), "µs");
                r.netref = get(&k("netref-tls"), "p50_us");
                r.raw = get(&k("raw"), "p50_us");
                rows.push(tls_note(r.with_ratios(), get(&k("netref"), "p50_us")));
            }
            // The typed proxy's call beside the dynamic one of the same run.
            let best = |imp: &str| {
                let runs = [get(&k(imp), "p50_us"), get(&k(&format!("{imp}/again")), "p50_us")];
                runs.into_iter().flatten().reduce(f64::min)
            };
            let (typed, dynamic) = (best("netref-typed"), best("netref"));
            let mut r = Row::new(format!("typed proxy sync latency p50, {}, {p}", tname(t)), "µs");
            r.netref = typed;
            if let (Some(typed), Some(dynamic)) = (typed, dynamic.filter(|d| *d > 0.0)) {
                r.ratios.push(("dynamic".into(), typed / dynamic));
                r.note = Some(format!(
                    "the dynamic call: {} µs; each the better of two runs, in the order typed, dynamic, dynamic, typed",
                    report::fmt_num(dynamic)
                ));
            }
            if p == "pinned" {
                r.target = target("typed/dynamic", r.ratio("dynamic"), Cmp::AtMost, 1.1);
            }
            rows.push(r);
            let mut r = Row::new(format!("CPU per sync call (client+server), {}, {p}", tname(t)), "µs");
            r.netref = sum(&k("netref"));
            r.raw = sum(&k("raw"));
            r.rpyc = sum(&k("rpyc-cached"));
            r.rpyc_attr = sum(&k("rpyc-attr"));
            r.tarpc = sum(&k("tarpc"));
            r.capnp = sum(&k("capnp"));
            let mut r = r.with_ratios();
            if let (Some(c), Some(s)) =
                (get(&k("netref"), "client_cpu_us"), get(&k("netref"), "server_cpu_us"))
            {
                r.note =
                    Some(format!("netref client {} + server {}", report::fmt_num(c), report::fmt_num(s)));
            }
            if p == "pinned" {
                r.target = target("netref/raw", r.ratio("raw"), Cmp::AtMost, 1.5);
            }
            rows.push(r);
        }
        // The targets apply to netref's defaults (coalescing on); explicit
        // batching (`netref::batch` on the sender, `Config::batch_replies` on
        // the server) and one write per message (`Config::coalesce(None)`)
        // are shown alongside.
        for (imp, mode) in MODES {
            let mut r = Row::new(format!("pipelined async, 1000 in flight, {}, {mode}", tname(t)), "calls/s");
            r.netref = get(&format!("pipelined/{t}/{imp}"), "calls_per_s");
            r.rpyc = get(&format!("pipelined/{t}/rpyc"), "calls_per_s");
            r.tarpc = get(&format!("pipelined/{t}/tarpc"), "calls_per_s");
            r.capnp = get(&format!("pipelined/{t}/capnp"), "calls_per_s");
            if get(&format!("pipelined/{t}/rpyc"), "window").is_some() {
                r.note = Some("RPyC with 100 in flight: it deadlocks with 1000".into());
            }
            let mut r = r.with_ratios();
            if imp == "netref" {
                r.target = target("netref/tarpc", r.ratio("tarpc"), Cmp::AtLeast, 2.0);
            }
            rows.push(r);
        }
        // Carrying an expiry must cost next to nothing, even with 20,000
        // calls in flight: the row compares netref with itself.
        if let Some(plain) = get(&format!("inflight/{t}/plain"), "calls_per_s") {
            let mut r = Row::new(
                format!("20,000 async calls in flight, each with an expiry, {}", tname(t)),
                "calls/s",
            );
            r.netref = get(&format!("inflight/{t}/expiring"), "calls_per_s");
            r.note = Some(format!("the same calls without an expiry: {} calls/s", report::fmt_num(plain)));
            if let Some(v) = r.netref.filter(|_| plain > 0.0) {
                r.ratios.push(("without expiry".into(), v / plain));
                r.target = target("with/without expiry", Some(v / plain), Cmp::AtLeast, 0.9);
            }
            rows.push(r);
        }
        let rpyc_events = get(&format!("events/{t}/rpyc"), "events_per_s");
        for (imp, mode) in MODES {
            for (via, name) in [
                ("bg", "BgServingThread"),
                ("mio", "mio loop"),
                ("polling", "polling loop"),
                ("calloop", "calloop loop"),
                ("glib", "glib MainContext"),
            ] {
                let mut r = Row::new(format!("events via {name}, {}, {mode}", tname(t)), "events/s");
                r.netref = get(&format!("events/{t}/{imp}/{via}"), "events_per_s");
                r.rpyc = rpyc_events;
                r.capnp = get(&format!("events/{t}/capnp"), "events_per_s");
                if get(&format!("events/{t}/rpyc"), "window").is_some() {
                    r.note = Some("RPyC with 100 in flight: it deadlocks with 1000".into());
                }
                let mut r = r.with_ratios();
                if imp == "netref" {
                    r.target = target("netref/RPyC", r.ratio("RPyC"), Cmp::AtLeast, 50.0);
                }
                rows.push(r);
            }
        }
        // Across languages in RPyC's dialect, beside RPyC with itself: the
        // netref column is the mixed pair, the RPyC column both sides Python.
        for (way, name) in [
            ("netref-to-python", "netref client, Python server"),
            ("python-to-netref", "Python client, netref server"),
        ] {
            let rows_of = [
                (
                    format!("latency/{t}/unpinned/{way}"),
                    "p50_us",
                    format!("latency/{t}/unpinned/rpyc-cached"),
                    "sync latency p50",
                    "µs",
                ),
                (
                    format!("pipelined/{t}/{way}"),
                    "calls_per_s",
                    format!("pipelined/{t}/rpyc"),
                    "pipelined async",
                    "calls/s",
                ),
                (
                    format!("events/{t}/{way}"),
                    "events_per_s",
                    format!("events/{t}/rpyc"),
                    "events",
                    "events/s",
                ),
            ];
            for (key, field, baseline, what, unit) in rows_of {
                let mut r = Row::new(format!("RPyC dialect, {name}: {what}, {}", tname(t)), unit);
                r.netref = get(&key, field);
                r.rpyc = get(&baseline, field);
                let windows: Vec<&str> = [(&key, "this pair"), (&baseline, "RPyC")]
                    .into_iter()
                    .filter(|(k, _)| get(k, "window").is_some())
                    .map(|(_, n)| n)
                    .collect();
                if !windows.is_empty() {
                    r.note = Some(format!(
                        "{} with 100 in flight: RPyC deadlocks with 1000",
                        windows.join(" and ")
                    ));
                }
                rows.push(r.with_ratios());
            }
        }
        let mut r = Row::new(format!("1 MiB echo, {}", tname(t)), "MiB/s");
        r.netref = get(&format!("payload/{t}/netref"), "mib_per_s");
        r.raw = get(&format!("payload/{t}/raw"), "mib_per_s");
        r.rpyc = get(&format!("payload/{t}/rpyc"), "mib_per_s");
        let mut r = r.with_ratios();
        r.target = target("netref/raw", r.ratio("raw"), Cmp::AtLeast, 0.8);
        rows.push(r);
        if t == "tcp" {
            let mut r = Row::new("1 MiB echo over TLS, TCP (raw: plain TCP)", "MiB/s");
            r.netref = get("payload/tcp/netref-tls", "mib_per_s");
            r.raw = get("payload/tcp/raw", "mib_per_s");
            rows.push(tls_note(r.with_ratios(), get("payload/tcp/netref", "mib_per_s")));
        }
    }
    for (server, name) in [("netref-mio", "mio"), ("netref-polling", "polling")] {
        let k = format!("scale/{server}");
        let idle = get(&k, "idle").unwrap_or(0.0) as usize;
        let wanted = report::fmt_num(idle_wanted as f64);
        let mut r = Row::new(format!("{wanted} idle connections, one {name} server thread"), "KiB/conn");
        r.netref = get(&k, "idle_kib_per_conn");
        if idle > 0 && idle < idle_wanted {
            r.note = Some(format!(
                "LIMIT: only {idle} held: RLIMIT_NOFILE {} at {} fds per server connection",
                get(&k, "server_nofile").unwrap_or(0.0),
                get(&k, "server_fds_per_conn").unwrap_or(0.0)
            ));
            r.scenario = format!("{idle} (of {wanted}) idle connections, one {name} server thread");
        }
        r.target = r.netref.map(|v| Target {
            what: "server RSS per connection".into(),
            value: v,
            cmp: Cmp::AtMost,
            threshold: 16.0,
            unit: " KiB",
        });
        rows.push(r);
        let active = get(&k, "active").unwrap_or(0.0);
        let active = report::fmt_num(active);
        let mut r = Row::new(format!("{active} active clients, one {name} server thread"), "calls/s");
        r.netref = get(&k, "active_calls_per_s");
        if let Some(s) = get(&k, "server_cpu_us") {
            r.note = Some(format!("server CPU {} µs/call", report::fmt_num(s)));
        }
        rows.push(r);
    }
    rows.retain(|r| {
        r.netref.is_some() || r.raw.is_some() || r.rpyc.is_some() || r.tarpc.is_some() || r.capnp.is_some()
    });
    rows
}
