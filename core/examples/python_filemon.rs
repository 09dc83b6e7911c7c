//! A netref client of a Python RPyC service: the FileMonitor of RPyC's
//! tutorial (`demos/python/filemon_service.py`, rpyc 6), driven from Rust
//! the way the tutorial's transcript drives it, its events served by a
//! `BgServingThread`.
//!
//! ```text
//! python3 demos/python/filemon_service.py --port 18871 &
//! cargo run -p netref --example python_filemon -- --port 18871 /tmp/floop.bloop
//! ```
//!
//! (`bash demos/python/run.sh rust-client` does both.)

use std::io::Write;
use std::sync::mpsc;
use std::time::Duration;

use netref::{BgServingThread, Builder, Config, Dialect, RemoteObject, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut port = 18871;
    if let Some(i) = args.iter().position(|a| a == "--port") {
        port = args.get(i + 1).ok_or("--port needs a number")?.parse()?;
        args.drain(i..i + 2);
    }
    let filename = args.first().cloned().unwrap_or_else(|| "/tmp/floop.bloop".into());

    let mut f = std::fs::File::create(&filename)?;
    let conn = Builder::default()
        .config(Config::default().dialect(Dialect::Rpyc))
        .connect_tcp(("127.0.0.1", port))?;
    let bgsrv = BgServingThread::new(&conn); // serves incoming events
    let (changed, change) = mpsc::channel();
    // The stat results are Python's `os.stat_result`s, by reference: their
    // attributes are read from here (the service allows public attributes).
    let on_file_changed = netref::callback(move |old: RemoteObject, new: RemoteObject| {
        let size = |s: &RemoteObject| s.getattr::<i64>("st_size").unwrap_or(-1);
        println!("file changed");
        println!("    old stat: size {}", size(&old));
        println!("    new stat: size {}", size(&new));
        let _ = changed.send(());
    });
    let root = conn.root()?;
    let mon: RemoteObject = root.call_method("FileMonitor", (&filename, on_file_changed, 0.1))?;
    // "wait a little for the filemon to have a look at the original file":
    // here, ask until it has.
    while matches!(mon.getattr::<Value>("last_stat")?, Value::Null) {}

    let wait = || change.recv_timeout(Duration::from_secs(10)).map_err(|_| "no change arrived in 10 s");
    f.write_all(b"shmoop")?; // change size
    f.flush()?;
    wait()?;
    f.write_all(b"groop")?; // change size
    f.flush()?;
    wait()?;
    drop(f);
    std::fs::File::create(&filename)?; // reopened for writing: size 0
    wait()?;

    mon.call_method::<()>("stop", ())?;
    bgsrv.stop()?;
    conn.close();
    println!("bye");
    Ok(())
}
