//! Drives the real window under a display (run it as
//! `xvfb-run -a cargo test`): file changes show up in the list, and a slow
//! asynchronous checksum leaves the main loop running until its answer
//! appears.
//!
//! GTK may only be initialised once per process, on the main thread, so
//! this test has its own `main` (`harness = false` in Cargo.toml). It never
//! sleeps to synchronise: it iterates the main context until a condition
//! holds, with a deadline that fails the test instead of hanging, and the
//! server's checksum waits for the test to let it finish.

use std::cell::Cell;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gtk::glib;
use gtk::prelude::*;
use netref_gtk_filemon::{fnv1a64, spawn_server, FileMonWindow, Options};

/// Generous: only a broken build ever waits this long.
const DEADLINE: Duration = Duration::from_secs(20);

/// Iterates the default main context until `done()` holds; panics after
/// [`DEADLINE`]. A heartbeat timer (installed in `main`) wakes the loop at
/// least every few milliseconds, so the deadline is checked even when
/// nothing else happens.
fn iterate_until(what: &str, done: impl Fn() -> bool) -> Duration {
    let ctx = glib::MainContext::default();
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "timed out after {DEADLINE:?} waiting for {what}");
        ctx.iteration(true);
    }
    start.elapsed()
}

fn append(path: &Path, line: &str) {
    let mut f = OpenOptions::new().append(true).open(path).expect("opening the watched file");
    f.write_all(line.as_bytes()).expect("writing the watched file");
}

fn main() {
    let total = Instant::now();
    // Xvfb comes without a D-Bus session: keep GTK's accessibility bridge
    // from looking for one (and warning). Still single-threaded here.
    if std::env::var_os("GTK_A11Y").is_none() {
        std::env::set_var("GTK_A11Y", "none");
    }
    if let Err(e) = gtk::init() {
        panic!("GTK could not start ({e}): run this test under a display, e.g. `xvfb-run -a cargo test`");
    }

    // The server's checksum waits here until the test opens the gate (with
    // a timeout of its own, so a failing test cannot leave it stuck).
    // `answered` is set once the gate has let a checksum through.
    let (open_gate, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let answered = Arc::new(AtomicBool::new(false));
    let a = answered.clone();
    let (server, accepting) = spawn_server("127.0.0.1:0", move || {
        let _ = gate.lock().unwrap().recv_timeout(DEADLINE);
        a.store(true, Ordering::SeqCst);
    })
    .expect("starting the FileMonitor server");
    let addr = server.local_addr().expect("a TCP server has an address");

    let dir = std::env::temp_dir().join(format!("netref-gtk-filemon-test-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("watched.txt");
    fs::write(&file, "one\n").unwrap();

    let conn = netref::Builder::default().connect_tcp(addr).expect("connecting to the server");
    let options = Options { interval: Duration::from_millis(10), ..Options::new(&file) };
    let filemon = FileMonWindow::build(&conn, &options).expect("building the window");
    filemon.window.present();

    // Counts main-loop dispatches: proof that the window keeps running.
    let ticks = Rc::new(Cell::new(0u64));
    let heartbeat = {
        let ticks = ticks.clone();
        glib::timeout_add_local(Duration::from_millis(5), move || {
            ticks.set(ticks.get() + 1);
            glib::ControlFlow::Continue
        })
    };
    iterate_until("the window to be mapped", || filemon.window.is_mapped());
    assert_eq!(filemon.events.n_items(), 0, "no change yet: {:?}", filemon.event_lines());

    // 1. A change to the file reaches the list, pushed by the server.
    append(&file, "two\n");
    let first_event = iterate_until("the first change in the list", || filemon.events.n_items() >= 1);
    let lines = filemon.event_lines();
    assert!(lines[0].ends_with("size 4 → 8 bytes"), "unexpected event line {lines:?}");
    let row = filemon.list.row_at_index(0).expect("the list shows a row for the event");
    let shown = row.child().and_downcast::<gtk::Label>().expect("a label row").text();
    assert_eq!(shown, lines[0]);

    // 2. The checksum: the click returns while the server still holds the
    // answer back (a click that waited for it would return only once the
    // gate gave up), and the call is in flight.
    filemon.checksum_button.emit_clicked();
    assert!(!answered.load(Ordering::SeqCst), "the click blocked until the server answered");
    assert!(!filemon.checksum_button.is_sensitive());
    assert!(filemon.result.text().contains("computing"), "{}", filemon.result.text());

    // While the server holds the reply back, the window is not frozen: the
    // loop keeps ticking and another change is listed.
    let ticks_at_click = ticks.get();
    append(&file, "three\n");
    iterate_until("a change listed while the checksum is in flight", || filemon.events.n_items() >= 2);
    iterate_until("main-loop ticks while the checksum is in flight", || ticks.get() >= ticks_at_click + 5);
    assert!(filemon.event_lines()[1].ends_with("size 8 → 14 bytes"), "{:?}", filemon.event_lines());
    assert!(filemon.result.text().contains("computing"), "answered too early: {}", filemon.result.text());
    let ticks_in_flight = ticks.get() - ticks_at_click;

    // Let the server answer; the result lands in the label.
    open_gate.send(()).unwrap();
    let answer =
        iterate_until("the checksum result", || filemon.result.text().starts_with("checksum: fnv1a"));
    let expected = format!("{:016x}", fnv1a64(b"one\ntwo\nthree\n"));
    let text = filemon.result.text();
    assert!(text.contains(&format!("fnv1a {expected} over 14 bytes")), "unexpected result {text:?}");
    assert!(filemon.checksum_button.is_sensitive(), "the button is enabled again");

    // 3. Closing: the monitor stops and the server sees the client go.
    filemon.window.destroy();
    filemon.shutdown();
    drop(conn);
    iterate_until("the server to drop the connection", || server.connection_count() == 0);
    heartbeat.remove();
    server.close();
    accepting.join().unwrap();
    fs::remove_dir_all(&dir).unwrap();

    println!(
        "gui test passed in {:?}: first event after {first_event:?}, checksum answered {answer:?} after the \
         gate opened, {ticks_in_flight} main-loop ticks while it was in flight",
        total.elapsed()
    );
}
