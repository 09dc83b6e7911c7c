//! RPyC's tutorial, part 5 ("Asynchronous Operation and Events"), as a netref
//! session: a server in a background thread, a client over a real TCP socket,
//! and every step printed the way the tutorial shows it.
//!
//! Run it with `cargo run -p netref --example tutorial`.
//!
//! The tutorial's seconds are tenths of a second here, so the whole session
//! takes about two seconds.

use std::thread;
use std::time::{Duration, Instant};

use netref::{async_, timed, Builder, ObjectBuilder, RemoteError, Service, ThreadedServer};

/// The tutorial's seconds, scaled down so the session runs in a moment.
fn secs(n: f64) -> Duration {
    Duration::from_secs_f64(n / 10.0)
}

fn main() -> netref::Result<()> {
    // The server side: RPyC's classic mode gives the client `time.sleep` and
    // `int`; netref exposes only what a service names, so it names those two.
    let service = Service::object(
        ObjectBuilder::new("TutorialService")
            .method("sleep", |seconds: f64| thread::sleep(secs(seconds)))
            .try_method("int", |text: String| {
                text.trim().parse::<i64>().map_err(|_| {
                    RemoteError::value_error(format!("invalid literal for int() with base 10: '{text}'"))
                })
            })
            .build(),
    );
    let server = ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(service))?;
    let addr = server.local_addr().expect("a TCP server has an address");
    let serving = server.spawn();

    println!(">>> conn = netref::connect(\"{addr}\")");
    let conn = netref::connect(addr)?;
    let root = conn.root()?;

    println!(">>> root.call_method(\"sleep\", (2,))   # blocks for two (tenths of) seconds");
    let started = Instant::now();
    root.call_method::<()>("sleep", (2.0,))?;
    println!("    returned after {:?}", started.elapsed());

    println!("\n# async_() turns an invocation asynchronous: it returns an AsyncResult");
    let asleep = async_(&root);
    println!(">>> let res = asleep.call_method(\"sleep\", (15,))");
    let res = asleep.call_method("sleep", (15.0,));
    println!(">>> res\n{res:?}");
    println!(">>> res.ready()\n{}", res.ready());
    println!("# ... after 15 (tenths of) seconds ...");
    res.wait()?;
    println!(">>> res.ready()\n{}", res.ready());
    println!(">>> res.value()\n{:?}", res.value()?);
    println!(">>> res\n{res:?}");

    println!("\n# a more interesting snippet: an async wrapper for the remote int()");
    let aint = async_(&root);
    println!(">>> let x = aint.call_method(\"int\", (\"8\",))");
    let x = aint.call_method("int", ("8",));
    x.wait()?;
    println!(">>> x.ready(), x.error()\n{}, {}", x.ready(), x.error());
    println!(">>> x.value_as::<i64>()\n{}", x.value_as::<i64>()?);

    println!("\n# and now with an exception");
    println!(">>> let x = aint.call_method(\"int\", (\"this is not a valid number\",))");
    let x = aint.call_method("int", ("this is not a valid number",));
    x.wait()?;
    println!(">>> x.ready(), x.error()\n{}, {}", x.ready(), x.error());
    println!(">>> x.value()");
    match x.value() {
        Err(e) => println!("{e}"),
        Ok(v) => println!("unexpected success: {v:?}"),
    }

    println!("\n# timed(): calls whose value() fails after a time limit");
    let tsleep = timed(&root, secs(5.0));
    println!(">>> tsleep.call_method(\"sleep\", (3,)).value()");
    println!("{:?}", tsleep.call_method("sleep", (3.0,)).value()?);
    println!(">>> tsleep.call_method(\"sleep\", (7,)).value()");
    match tsleep.call_method("sleep", (7.0,)).value() {
        Err(e) if e.is_timeout() => println!("Error: {e}"),
        other => println!("unexpected: {other:?}"),
    }

    // Leave before the server does: the timed-out sleep is still running
    // there, and closing tells the server to drop its reply.
    conn.close();
    server.close();
    serving.join().expect("the server thread ends after close()");
    Ok(())
}
