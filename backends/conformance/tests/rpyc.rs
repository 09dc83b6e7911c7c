//! The tutorial's FileMonitor service in Python (rpyc 6.0.2), a netref
//! client receiving its events through a `BgServingThread`, as the
//! tutorial's own client does. (The same service with the client on each
//! loop is the conformance check `python_filemon_events_on_the_loop`.)

use std::sync::mpsc;

use netref::{BgServingThread, Builder, Config, Dialect, RemoteObject};
use netref_conformance::rpyc::{python_filemon_service, rpyc_python, start_python_monitor, Watched};
use netref_conformance::PATIENCE;

#[test]
fn python_filemon_events_through_a_bg_serving_thread() {
    let Some(python) = rpyc_python("the Python FileMonitor's events through a BgServingThread") else {
        return;
    };
    let (_service, port) = python_filemon_service(&python);
    let file = Watched::new("filemon-bg");
    let conn = Builder::default()
        .config(Config::default().dialect(Dialect::Rpyc))
        .connect_tcp(("127.0.0.1", port))
        .unwrap();
    let bgsrv = BgServingThread::new(&conn);
    let (tx, rx) = mpsc::channel();
    // The tutorial's `on_file_changed(oldstat, newstat)`: the stat results
    // are Python's objects, read through their references (calls made
    // from the serving thread while it serves the event).
    let on_file_changed = netref::callback(move |old: RemoteObject, new: RemoteObject| {
        let sizes = (old.getattr::<i64>("st_size").unwrap(), new.getattr::<i64>("st_size").unwrap());
        tx.send(sizes).unwrap();
    });
    let mon = start_python_monitor(&conn, &file, on_file_changed);
    let mut before = 0;
    for (change, size) in file.changes() {
        change();
        // Until the change, events that change no size (see Watched::changes).
        loop {
            let sizes = rx.recv_timeout(PATIENCE).unwrap();
            if sizes == (before, size) {
                break;
            }
            assert_eq!(sizes, (before, before), "file changed");
        }
        before = size;
    }
    mon.call_method::<()>("stop", ()).unwrap();
    bgsrv.stop().unwrap();
    conn.close();
}
