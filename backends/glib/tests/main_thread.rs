//! Callbacks that capture `!Send` values (widgets) and close handlers.
//! Each test runs under its own private thread-default `MainContext`, so the
//! tests run in parallel and need no display.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glib::MainContext;
use netref::{BgServingThread, Builder};
use netref_conformance::PeerServer;

/// Iterates `ctx` until `done` holds; fails after 10 s rather than hanging.
fn run_until(ctx: &MainContext, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        // A short timer bounds each blocking iteration so the deadline is seen.
        let tick = glib::timeout_source_new(Duration::from_millis(20), None, glib::Priority::DEFAULT, || {
            glib::ControlFlow::Break
        });
        tick.attach(Some(ctx));
        ctx.iteration(true);
        tick.destroy();
    }
}

fn with_context(test: impl FnOnce(&MainContext)) {
    let ctx = MainContext::new();
    ctx.with_thread_default(|| test(&ctx)).expect("acquire the context");
}

/// Something a GTK callback would touch: `!Send`, and it records its drop.
struct Widget {
    texts: RefCell<Vec<i64>>,
    dropped: Rc<Cell<bool>>,
}

impl Drop for Widget {
    fn drop(&mut self) {
        self.dropped.set(true);
    }
}

#[test]
fn callback_capturing_widgets_runs_on_the_context_thread() {
    with_context(|ctx| {
        let server = PeerServer::start();
        let conn = server.connect();
        let attached = netref_glib::attach(&conn, ctx).unwrap();
        let root = conn.root().unwrap();
        let dropped = Rc::new(Cell::new(false));
        let widget = Rc::new(Widget { texts: RefCell::default(), dropped: dropped.clone() });
        let w = widget.clone();
        let cb = netref_glib::callback(ctx, move |x: i64| {
            w.texts.borrow_mut().push(x);
            x * 2
        });
        // The peer calls the callback while we wait for its reply.
        let doubled: i64 = root.call_method("call_me", (cb, 21)).unwrap();
        assert_eq!(doubled, 42);
        assert_eq!(*widget.texts.borrow(), [21]);
        // Released by the peer, the captures die on this thread.
        drop(widget);
        conn.ping().unwrap();
        run_until(ctx, "the callback's captures to be dropped", || dropped.get());
        drop(attached);
    });
}

#[test]
fn callback_called_off_its_thread_is_a_clear_remote_error() {
    with_context(|ctx| {
        let server = PeerServer::start();
        let conn = server.connect();
        // Not attached: other threads serve the peer's calls.
        let bg = BgServingThread::new(&conn);
        let root = conn.root().unwrap();
        let dropped = Rc::new(Cell::new(false));
        let widget = Widget { texts: RefCell::default(), dropped: dropped.clone() };
        let cb = netref_glib::callback(ctx, move |x: i64| {
            widget.texts.borrow_mut().push(x);
            x
        });
        // Called from another thread, so that neither the caller nor the
        // background thread, whichever serves the callback, is its owner.
        let err = std::thread::scope(|s| {
            s.spawn(|| root.call_method::<i64>("call_me", (cb, 1)).unwrap_err()).join().unwrap()
        });
        let remote = err.as_remote().expect("a remote error");
        assert_eq!(remote.type_name, "RuntimeError", "{err}");
        assert!(remote.message.contains("another thread"), "{err}");
        // The callback was released on the background thread; its captures
        // still die on the context's thread, once it iterates.
        conn.ping().unwrap();
        run_until(ctx, "the captures to be dropped on the context's thread", || dropped.get());
        bg.stop().unwrap();
    });
}

#[test]
fn on_close_with_a_local_callback_runs_on_the_context_thread_when_the_peer_goes() {
    with_context(|ctx| {
        let (client, peer) = Builder::default().pair(Builder::default()).unwrap();
        let attached = netref_glib::attach(&client, ctx).unwrap();
        let status = Rc::new(RefCell::new(String::from("connected"))); // stands in for a label
        let s = status.clone();
        client.on_close(netref_glib::local_callback(ctx, move |why: &netref::CloseReason| {
            *s.borrow_mut() = format!("disconnected: {why}");
        }));
        peer.close();
        run_until(ctx, "the close handler", || status.borrow().starts_with("disconnected"));
        assert!(status.borrow().contains("closed"), "{}", status.borrow());
        assert!(!attached.is_attached(), "the sources went with the connection");
    });
}

#[test]
fn a_local_callback_run_on_another_thread_hops_to_the_context_thread() {
    with_context(|ctx| {
        let (client, _peer) = Builder::default().pair(Builder::default()).unwrap();
        let ran_on: Rc<Cell<Option<std::thread::ThreadId>>> = Rc::default();
        let r = ran_on.clone();
        client.on_close(netref_glib::local_callback(ctx, move |_: &netref::CloseReason| {
            r.set(Some(std::thread::current().id()));
        }));
        // Closed on another thread: the handler is called there, and hops.
        std::thread::scope(|s| {
            s.spawn(|| client.close());
        });
        assert_eq!(ran_on.get(), None, "not run off the context's thread");
        run_until(ctx, "the handler on the context's thread", || ran_on.get().is_some());
        assert_eq!(ran_on.get(), Some(std::thread::current().id()));
    });
}
