//! # calloop-ticker
//!
//! A tool in the style of a Wayland client: everything happens on one
//! [calloop](https://docs.rs/calloop) `EventLoop`, which runs a timer (the
//! tool's own work: a tick) and the netref connection (a
//! [`netref_calloop::ConnectionSource`], put there by
//! [`netref_calloop::attach`]). A server pushes news events by calling the
//! tool's typed callback ([`netref_calloop::typed_callback`]); they arrive on the loop's
//! thread between ticks, with the loop's state at hand and no extra thread
//! on the tool's side.
//!
//! ```text
//! cargo run -p calloop-ticker -- [--events N] [--tick-ms T] [--period-ms P]     # embedded server
//! cargo run -p calloop-ticker -- server [--addr 127.0.0.1:18872]                # separate server
//! cargo run -p calloop-ticker -- --addr 127.0.0.1:18872 [--events N] ...        # tool only
//! ```
//!
//! Without `--events` the tool runs until interrupted.

use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use calloop::timer::{TimeoutAction, Timer};
use calloop::{EventLoop, LoopSignal};
use netref::typed::{Callback, Obj};
use netref::{Builder, Connection, Service};

type Res<T> = Result<T, Box<dyn Error>>;

const USAGE: &str = "usage:
  calloop-ticker [--addr ADDR] [--events N] [--tick-ms T] [--period-ms P]
  calloop-ticker server [--addr ADDR]";

/// The news desk.
#[netref::service]
pub trait NewsDesk {
    /// Pushes a headline to `on_news(n, headline)` every `period_ms`
    /// until the returned subscription is cancelled or released, or the
    /// subscriber goes away.
    fn subscribe(&self, on_news: Callback<(u64, String)>, period_ms: u64) -> Obj<dyn Subscription>;
}

/// One subscriber's headlines.
#[netref::service]
pub trait Subscription {
    /// Stops the headlines.
    fn cancel(&self);
}

/// The desk of one connection.
struct Desk {
    /// Weak: the service must not keep its own connection open.
    conn: netref::WeakConnection,
}

impl NewsDesk for Desk {
    fn subscribe(&self, on_news: Callback<(u64, String)>, period_ms: u64) -> Obj<dyn Subscription> {
        let period = Duration::from_millis(period_ms);
        let running = Arc::new(AtomicBool::new(true));
        let (flag, conn) = (running.clone(), self.conn.clone());
        thread::spawn(move || {
            let gone = || conn.upgrade().is_none_or(|c| c.is_closed());
            let mut n = 0u64;
            loop {
                thread::sleep(period);
                if !flag.load(Ordering::Acquire) || gone() {
                    break;
                }
                n += 1;
                // An event: one-way, its result ignored.
                on_news.notify((n, format!("headline {n}")));
            }
        });
        Obj::new(Running(running))
    }
}

/// A subscription's flag; released by the subscriber, it stops too.
struct Running(Arc<AtomicBool>);

impl Subscription for Running {
    fn cancel(&self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

fn news_service() -> Service {
    Service::new(|conn: &Connection| netref::typed::export::<dyn NewsDesk>(Desk { conn: conn.downgrade() }))
}

/// The tool's state, owned by the loop and handed to every source's callback.
struct Tool {
    ticks: u64,
    events: u64,
    /// Stop after this many events (`None`: run until interrupted).
    want: Option<u64>,
    subscription: Option<Obj<dyn Subscription>>,
    signal: LoopSignal,
}

fn run_tool(addr: &str, want: Option<u64>, tick: Duration, period: Duration) -> Res<()> {
    let mut event_loop: EventLoop<'_, Tool> = EventLoop::try_new()?;
    let handle = event_loop.handle();

    let conn = netref::connect(addr)?;
    // From here on the loop's thread reads and serves the connection: the
    // server's callbacks run inside `dispatch`, like Wayland events do.
    let attached = netref_calloop::attach(&handle, &conn)?;

    handle.insert_source(Timer::from_duration(tick), move |_, _, tool: &mut Tool| {
        tool.ticks += 1;
        println!("tick {} ({} events so far)", tool.ticks, tool.events);
        TimeoutAction::ToDuration(tick)
    })?;

    // The server calls this on the loop's thread, inside `dispatch`, which
    // lends it the loop's `Tool`: no channel, and it need not be `Send`.
    let on_news = netref_calloop::typed_callback(|tool: &mut Tool, n: u64, headline: String| {
        if tool.want.is_some_and(|want| tool.events >= want) {
            return; // already done; the loop stops after this dispatch
        }
        tool.events += 1;
        println!("event {n}: {headline}");
        if tool.want == Some(tool.events) {
            if let Some(sub) = tool.subscription.take() {
                // A synchronous call from inside a loop callback: it waits on
                // the connection's own socket without re-entering the loop.
                if let Err(e) = sub.cancel() {
                    eprintln!("cancel failed: {e}");
                }
            }
            println!("done: {} events, {} ticks", tool.events, tool.ticks);
            tool.signal.stop();
        }
    });
    let period_ms = u64::try_from(period.as_millis())?;
    let subscription = NewsDeskProxy::root(&conn)?.subscribe(on_news, period_ms)?;
    println!("subscribed to {addr} (a headline every {period_ms} ms, a tick every {} ms)", tick.as_millis());

    let mut tool =
        Tool { ticks: 0, events: 0, want, subscription: Some(subscription), signal: event_loop.get_signal() };
    event_loop.run(None, &mut tool, |_| {})?;

    // Detach before closing, so the close happens on a plain connection.
    drop(attached);
    conn.close();
    Ok(())
}

fn serve(addr: &str) -> Res<()> {
    let server = netref::ThreadedServer::bind_tcp(addr, Builder::default().service(news_service()))?;
    println!("listening on {}", server.local_addr().ok_or("no TCP address")?);
    server.start();
    Ok(())
}

/// The value following `--name`, if given.
fn opt(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn millis(args: &[String], name: &str, default: u64) -> Res<Duration> {
    let ms = match opt(args, name) {
        Some(s) => s.parse::<u64>().map_err(|e| format!("{name}: {e}"))?,
        None => default,
    };
    Ok(Duration::from_millis(ms))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("calloop-ticker: {e}\n{USAGE}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn run(args: &[String]) -> Res<()> {
    if args.first().map(String::as_str) == Some("server") {
        return serve(opt(args, "--addr").as_deref().unwrap_or("127.0.0.1:18872"));
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let want = match opt(args, "--events") {
        Some(s) => Some(s.parse::<u64>().map_err(|e| format!("--events: {e}"))?),
        None => None,
    };
    let tick = millis(args, "--tick-ms", 250)?;
    let period = millis(args, "--period-ms", 700)?;
    match opt(args, "--addr") {
        Some(addr) => run_tool(&addr, want, tick, period),
        None => {
            // No server given: run one on a thread of this process.
            let server =
                netref::ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(news_service()))?;
            let addr = server.local_addr().ok_or("no TCP address")?;
            let accept = server.spawn();
            println!("embedded server listening on {addr}");
            let result = run_tool(&addr.to_string(), want, tick, period);
            server.close();
            let _ = accept.join();
            result
        }
    }
}
