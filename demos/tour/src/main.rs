//! # tour
//!
//! RPyC's tutorial, part 5 ("Asynchronous Operation and Events"), replayed
//! with netref in one process: a [`ThreadedServer`] on a real TCP socket and
//! a client that talks to it, narrated the way the tutorial's interpreter
//! session reads (`>>>` the step, then what it gave).
//!
//! The tutorial sleeps for seconds; here one of its seconds lasts
//! [`SECOND`], so the whole tour runs in about two seconds.
//!
//! ```text
//! cargo run -p tour
//! ```

use std::error::Error;
use std::fmt;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use netref::typed::Callback;
use netref::{async_, BgServingThread, Builder, Service, ThreadedServer};
use serde::{Deserialize, Serialize};

/// How long one second of the tutorial's session lasts here.
const SECOND: Duration = Duration::from_millis(50);

/// The tutorial's `n` seconds, in seconds of ours (what the remote `sleep` takes).
fn secs(n: f64) -> f64 {
    SECOND.mul_f64(n).as_secs_f64()
}

/// Prints a step the way the tutorial's session shows it.
fn step(code: &str) {
    println!(">>> {code}");
}

/// Python's `ValueError`, so the remote failure prints like the tutorial's.
#[derive(Debug, Serialize, Deserialize)]
pub struct ValueError(String);

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for ValueError {}

/// The server's service: the few things of RPyC's classic service the
/// tutorial uses (`time.sleep`, `int`), plus a ticker that fires events.
#[netref::service]
pub trait TourService {
    /// Sleeps for `seconds`.
    fn sleep(&self, seconds: f64);
    /// Python's `int(s)`.
    fn int(&self, s: String) -> Result<i64, ValueError>;
    /// Calls `on_tick(n)` `count` times, every `period` seconds, from a
    /// thread of the server's own.
    fn ticker(&self, on_tick: Callback<(i64,)>, count: i64, period: f64);
}

struct Tour;

impl TourService for Tour {
    fn sleep(&self, seconds: f64) {
        thread::sleep(Duration::from_secs_f64(seconds))
    }

    fn int(&self, s: String) -> Result<i64, ValueError> {
        s.trim().parse().map_err(|_| ValueError(format!("invalid literal for int() with base 10: '{s}'")))
    }

    fn ticker(&self, on_tick: Callback<(i64,)>, count: i64, period: f64) {
        // Events come from the server's own thread, not from inside a
        // request: the client must serve its connection to see them.
        thread::spawn(move || {
            for n in 1..=count {
                thread::sleep(Duration::from_secs_f64(period));
                // One-way: an event's return value is ignored.
                on_tick.notify((n,));
            }
        });
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    println!("# netref tour: RPyC's tutorial part 5, asynchronous operation and events.");
    println!("# One process: a ThreadedServer on a real TCP socket, and a client.");
    println!("# The tutorial's seconds last {} ms here.", SECOND.as_millis());

    let server = ThreadedServer::bind_tcp(
        "127.0.0.1:0",
        Builder::default().service(Service::typed::<dyn TourService>(Tour)),
    )?;
    let addr = server.local_addr().ok_or("the server has no TCP address")?;
    let accept = server.spawn();
    println!("# server listening on {addr}");
    println!();

    step(&format!("let conn = netref::connect(\"{addr}\")?;"));
    let conn = netref::connect(addr)?;
    step("let tour = TourServiceProxy::root(&conn)?;  // checks that the server serves TourService");
    let tour = TourServiceProxy::root(&conn)?;
    step(&format!("tour.sleep({})?;  // blocks for the tutorial's 2 seconds", secs(2.0)));
    tour.sleep(secs(2.0))?;

    println!();
    println!("# async_() turns the invocation asynchronous: calls return an AsyncResult");
    step("let asleep = tour.async_();");
    let asleep = tour.async_();
    step(&format!("let res = asleep.sleep({});  // the tutorial's sleep(15)", secs(15.0)));
    let res = asleep.sleep(secs(15.0));
    step("res");
    println!("{res:?}");
    step("res.ready()");
    println!("{}", res.ready());
    step("res.value()?  // blocks until the reply comes, serving the connection meanwhile");
    println!("{:?}", res.value()?);
    step("res.ready()");
    println!("{}", res.ready());
    step("res");
    println!("{res:?}");

    println!();
    println!("# a remote int(): a valid call, then one that raises");
    step("let aint = tour.async_();");
    let aint = tour.async_();
    step("let x = aint.int(\"8\".into());");
    let x = aint.int("8".into());
    step("x");
    println!("{x:?}");
    // In the tutorial the reply arrived while the next line was typed; wait
    // for it explicitly so the transcript is the same on every run.
    step("x.wait()?;");
    x.wait()?;
    step("x.ready()");
    println!("{}", x.ready());
    step("x.error()");
    println!("{}", x.error());
    step("x.value()?");
    println!("{}", x.value()?);
    step("let x = aint.int(\"this is not a valid number\".into());");
    let x = aint.int("this is not a valid number".into());
    step("x.wait()?;");
    x.wait()?;
    step("x.ready()");
    println!("{}", x.ready());
    step("x.error()");
    println!("{}", x.error());
    step("x.value()  // the method's own error, a CallError::App(ValueError)");
    match x.value() {
        Ok(v) => println!("Ok({v})  (unexpected!)"),
        Err(netref::typed::CallError::App(e)) => println!("Err: ValueError: {e}"),
        Err(e) => println!("Err, not the method's own: {e}"),
    }
    // The remote side of it, the way RPyC prints a remote exception.
    step("x.value_as::<i64>()  // the same reply, read as a plain netref::Error");
    match x.value_as::<i64>() {
        Ok(v) => println!("Ok({v})  (unexpected!)"),
        Err(e) => println!("Err: {e}"),
    }

    println!();
    println!("# timed(): a call that may take at most the given time");
    let limit = SECOND.mul_f64(6.0);
    step(&format!("let timed_sleep = tour.timed({limit:?});  // the tutorial's 6 seconds"));
    let timed_sleep = tour.timed(limit);
    step(&format!("timed_sleep.sleep({}).value()  // 3 seconds: works", secs(3.0)));
    match timed_sleep.sleep(secs(3.0)).value() {
        Ok(v) => println!("Ok({v:?})"),
        Err(e) => println!("Err: {e}"),
    }
    step(&format!("timed_sleep.sleep({}).value()  // 10 seconds: fails", secs(10.0)));
    match timed_sleep.sleep(secs(10.0)).value() {
        Ok(v) => println!("Ok({v:?})  (unexpected!)"),
        Err(e) => println!("Err: {e}"),
    }

    println!();
    println!("# add_callback(): run something when the reply arrives");
    step(&format!("let res = asleep.sleep({});", secs(1.0)));
    let res = asleep.sleep(secs(1.0));
    step("res.add_callback(|r| println!(\"callback: the reply is here (error: {})\", r.error()));");
    res.add_callback(|r| println!("callback: the reply is here (error: {})", r.error()));
    // The callback runs on whichever thread delivers the reply: here, the
    // one waiting in wait().
    step("res.wait()?;");
    res.wait()?;

    println!();
    println!("# set_expiry(): give up on a result that takes too long");
    step(&format!("let res = asleep.sleep({});  // 5 seconds", secs(5.0)));
    let res = asleep.sleep(secs(5.0));
    let expiry = SECOND.mul_f64(2.0);
    step(&format!("res.set_expiry({expiry:?});  // 2 seconds"));
    res.set_expiry(expiry);
    step("res.wait()");
    match res.wait() {
        Ok(()) => println!("Ok(())  (unexpected!)"),
        Err(e) => println!("Err: {e}"),
    }
    step("res.expired()");
    println!("{}", res.expired());
    step("res.ready()");
    println!("{}", res.ready());

    println!();
    println!("# events: the server calls a client closure from its own thread");
    step("let bgsrv = netref::BgServingThread::new(&conn);  // serves incoming events in the background");
    let bgsrv = BgServingThread::new(&conn);
    let (ticked, ticks) = mpsc::channel();
    step(&format!(
        "tour.ticker(|n: i64| println!(\"tick {{n}} from the server\"), 3, {})?;  // a closure is a Callback",
        secs(1.0)
    ));
    tour.ticker(
        move |n: i64| {
            println!("tick {n} from the server");
            let _ = ticked.send(n);
        },
        3,
        secs(1.0),
    )?;
    // The main thread is free meanwhile; it only waits so that the
    // transcript ends after the last event.
    println!("# ... the main thread is free; the background thread prints the events ...");
    for _ in 0..3 {
        ticks.recv_timeout(Duration::from_secs(10))?;
    }

    println!();
    println!("# underneath: the dynamic API, RPyC's own shape, calls the same server by name");
    step("let root = conn.root()?;");
    let root = conn.root()?;
    step("root.call_method::<i64>(\"int\", (\"42\",))?");
    println!("{}", root.call_method::<i64>("int", ("42",))?);
    step("netref::async_(&root).call_method(\"int\", (\"7\",)).typed::<i64>().value()?");
    println!("{}", async_(&root).call_method("int", ("7",)).typed::<i64>().value()?);
    step("root.dir()?  // only the trait's methods are reachable");
    println!("{:?}", root.dir()?);
    step("bgsrv.stop()?;");
    bgsrv.stop()?;
    step("conn.close();");
    conn.close();

    server.close();
    accept.join().map_err(|_| "the server's accept thread panicked")?;
    println!();
    println!("# done");
    Ok(())
}
