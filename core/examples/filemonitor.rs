//! RPyC's FileMonitor, server and client: `cargo run -p netref --example filemonitor`.

use std::{fs, sync::mpsc, thread, time::Duration};

use netref::{
    async_, callback, BgServingThread, Builder, ObjectBuilder, RemoteObject, Service, ThreadedServer,
};

fn size(path: &str) -> std::io::Result<u64> {
    Ok(fs::metadata(path)?.len())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Server: `FileMonitor(path, on_change)` polls the file and calls the
    // client's `on_change(old, new)` asynchronously on each change: an event.
    let monitor = ObjectBuilder::new("FileMonitorService")
        .try_method("FileMonitor", |path: String, on_change: RemoteObject| {
            let mut last = size(&path)?; // a missing file is the caller's error
            thread::spawn(move || loop {
                thread::sleep(Duration::from_millis(20));
                let Ok(now) = size(&path) else { continue };
                if now != last {
                    // Until the client goes away.
                    if async_(&on_change).call((last, now)).wait().is_err() {
                        return;
                    }
                    last = now;
                }
            });
            Ok::<_, std::io::Error>(())
        })
        .build();
    let server =
        ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(Service::object(monitor)))?;
    let addr = server.local_addr().ok_or("no TCP address")?;
    server.spawn();

    // Client: a closure passed as an argument is a callback the server can
    // call; a BgServingThread runs it as each event arrives.
    let conn = netref::connect(addr)?;
    let _serving = BgServingThread::new(&conn);
    let (changed, changes) = mpsc::channel();
    let on_change = callback(move |old: u64, new: u64| changed.send((old, new)).unwrap());
    let path = std::env::temp_dir().join(format!("netref-filemonitor-{}", std::process::id()));
    fs::write(&path, "")?;
    conn.root()?.call_method::<()>("FileMonitor", (path.to_str().unwrap(), on_change))?;

    fs::write(&path, "shmoop")?;
    let (old, new) = changes.recv_timeout(Duration::from_secs(10))?;
    println!("file changed: {old} -> {new} bytes");
    assert_eq!((old, new), (0, 6));
    fs::remove_file(&path)?;
    Ok(())
}
