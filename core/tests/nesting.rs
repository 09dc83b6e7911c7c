//! Callbacks nested past `Config::max_nesting` fail with the limit's error
//! instead of overflowing a thread's stack (which aborts the process).

use std::sync::{Arc, Mutex};
use std::thread;

use netref::error::LimitError;
use netref::testing::Pair;
use netref::{
    Builder, Config, Connection, Error, LocalObject, ObjectBuilder, RemoteObject, Service, ThreadedServer,
};

/// The server's root: `bounce(n, cb)` calls `cb(n - 1)`, which calls
/// `bounce` again: n levels of nesting on each side.
fn bouncer_service() -> Service {
    Service::object(
        ObjectBuilder::new("Server")
            .try_method("bounce", |n: i64, cb: RemoteObject| -> netref::Result<i64> {
                if n == 0 {
                    Ok(0)
                } else {
                    Ok(cb.call::<i64>((n - 1,))? + 1)
                }
            })
            .build(),
    )
}

/// The client's side of the bounce: a callback calling the server's
/// `bounce` with itself. Call `Bounce::release` when done: the callback
/// holds itself and the server's root.
struct Bounce {
    root: RemoteObject,
    cb: LocalObject,
    me: Arc<Mutex<Option<LocalObject>>>,
}

impl Bounce {
    fn new(conn: &Connection) -> Bounce {
        let root = conn.root().unwrap();
        let me = Arc::new(Mutex::new(None::<LocalObject>));
        let (r, m) = (root.clone(), me.clone());
        let cb = ObjectBuilder::new("Bouncer")
            .try_callable(move |n: i64| -> netref::Result<i64> {
                let me = m.lock().unwrap().clone().expect("set before the first call");
                r.call_method("bounce", (n, me))
            })
            .build();
        *me.lock().unwrap() = Some(cb.clone());
        Bounce { root, cb, me }
    }

    fn depth(&self, n: i64) -> netref::Result<i64> {
        self.root.call_method("bounce", (n, self.cb.clone()))
    }

    fn release(self) {
        self.me.lock().unwrap().take();
    }
}

/// The error a call nested too deep comes back with, somewhere down the
/// chain: a `LimitError` naming `max_nesting`.
fn assert_nesting_error(err: &Error, max: usize) {
    let text = err.to_string();
    match err {
        Error::Limit(LimitError::TooDeeplyNested { max: m }) => assert_eq!(*m, max),
        Error::Remote(r) => {
            assert_eq!(r.type_name, "LimitError", "{text}");
            assert!(r.message.contains(&format!("max_nesting ({max})")), "{text}");
        }
        other => panic!("expected the nesting limit's error, got {other}"),
    }
}

#[test]
fn callbacks_nested_past_the_limit_fail_with_its_error() {
    let max = 16;
    let config = Config::default().max_nesting(max);
    let pair = Pair::with_builders(
        Builder::default().config(config.clone()),
        Builder::default().config(config).service(bouncer_service()),
    );
    let bounce = Bounce::new(&pair.client);
    // Both sides run on this thread, so each round trip is two levels.
    assert_eq!(bounce.depth(5).unwrap(), 5);
    let err = bounce.depth(1_000).unwrap_err();
    assert_nesting_error(&err, max);
    // The connection carries on, and so does the process.
    assert_eq!(bounce.depth(3).unwrap(), 3);
    bounce.release();
    pair.client.close();
}

#[test]
fn a_call_at_the_limit_is_refused_before_it_is_sent() {
    // The deepest callback's own call fails on this side, with the typed
    // error: the peer never runs a call whose caller was told it failed.
    let max = 4;
    let pair = Pair::with_builders(
        Builder::default().config(Config::default().max_nesting(max)),
        Builder::default().config(Config::default().max_nesting(1_000)).service(bouncer_service()),
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let root = pair.client.root().unwrap();
    let me = Arc::new(Mutex::new(None::<LocalObject>));
    let (r, m, s) = (root.clone(), me.clone(), seen.clone());
    let cb = ObjectBuilder::new("Bouncer")
        .try_callable(move |n: i64| -> netref::Result<i64> {
            let me = m.lock().unwrap().clone().expect("set");
            let out = r.call_method::<i64>("bounce", (n, me));
            if let Err(e) = &out {
                s.lock().unwrap().push(e.to_string());
            }
            out
        })
        .build();
    *me.lock().unwrap() = Some(cb.clone());
    let err = root.call_method::<i64>("bounce", (100, cb)).unwrap_err();
    assert_nesting_error(&err, max);
    let seen = seen.lock().unwrap();
    let first = seen.first().expect("a callback saw the refusal");
    assert_eq!(first, &Error::from(LimitError::TooDeeplyNested { max }).to_string());
    me.lock().unwrap().take();
    pair.client.close();
}

/// A client connection to `server`, on a thread of its own with
/// `stack` bytes (`None`: std's default), running `f`.
fn with_client<T: Send + 'static>(
    server: &ThreadedServer,
    builder: Builder,
    stack: Option<usize>,
    f: impl FnOnce(&Bounce) -> T + Send + 'static,
) -> T {
    let addr = server.local_addr().unwrap();
    let mut t = thread::Builder::new().name("nesting-client".into());
    if let Some(bytes) = stack {
        t = t.stack_size(bytes);
    }
    t.spawn(move || {
        let conn = builder.connect_tcp(addr).unwrap();
        let bounce = Bounce::new(&conn);
        let out = f(&bounce);
        bounce.release();
        conn.close();
        out
    })
    .unwrap()
    .join()
    .expect("the client thread ran to the end")
}

#[test]
fn a_threaded_server_at_its_default_stack_survives_deep_nesting() {
    // Default stack sizes on both sides and the default limit: nesting
    // 10,000 levels deep used to overflow the server thread's stack (about
    // 390 levels in a debug build) and abort the whole process.
    let server =
        ThreadedServer::bind_tcp("127.0.0.1:0", Builder::default().service(bouncer_service())).unwrap();
    let accept = server.spawn();
    let max = Config::default().max_nesting;
    let err = with_client(&server, Builder::default(), None, |b| b.depth(10_000).unwrap_err().to_string());
    assert!(err.contains(&format!("max_nesting ({max})")), "{err}");
    // The server still serves.
    let ok = with_client(&server, Builder::default(), None, |b| b.depth(10).unwrap());
    assert_eq!(ok, 10);
    server.close();
    accept.join().unwrap();
}

#[test]
fn a_bigger_stack_and_limit_nest_deeper() {
    let max = 1_500;
    let stack = 256 << 20;
    let config = Config::default().max_nesting(max);
    let server = ThreadedServer::bind_tcp(
        "127.0.0.1:0",
        Builder::default().config(config.clone()).service(bouncer_service()),
    )
    .unwrap()
    .stack_size(stack);
    let accept = server.spawn();
    // Past the default limit, well within the raised one.
    let depth = 1_000;
    let ok = with_client(&server, Builder::default().config(config), Some(stack), move |b| {
        b.depth(depth).unwrap()
    });
    assert_eq!(ok, depth);
    server.close();
    accept.join().unwrap();
}

#[test]
fn the_readme_limits_table_gives_the_default_limit() {
    let readme = include_str!("../../README.md");
    let row = readme
        .lines()
        .find(|l| l.starts_with("| `max_nesting` |"))
        .expect("the README's limits table has a max_nesting row");
    let default: usize = row.split('|').nth(2).unwrap().trim().replace(',', "").parse().unwrap();
    assert_eq!(default, Config::default().max_nesting, "{row}");
}
