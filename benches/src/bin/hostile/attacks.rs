//! The attacks, one per row of the hostile-peers table: each runs until
//! `stop` is set (or it has done all it does), holding its connections
//! until then, and says what it did.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use netref::wire::Cbor;
use netref::{async_, AsyncResult, Builder, Connection, RemoteObject};

use crate::raw::{self, RawClient};

/// How big an attack is: `full` is the size the table's findings were
/// measured at; the default is smaller, for a quick run.
#[derive(Clone, Copy)]
pub(crate) struct Size {
    pub(crate) full: bool,
}

impl Size {
    fn pick(self, quick: usize, full: usize) -> usize {
        if self.full {
            full
        } else {
            quick
        }
    }
}

/// One attack: its row in the table, a name, and what it runs.
pub(crate) struct Attack {
    pub(crate) row: u32,
    pub(crate) name: &'static str,
    pub(crate) run: fn(SocketAddr, &AtomicBool, Size) -> String,
}

/// Every attack, in the table's order.
pub(crate) const ATTACKS: &[Attack] = &[
    Attack { row: 1, name: "maximal frames announced", run: forged_lengths },
    Attack { row: 2, name: "frame of small integers", run: small_integers },
    Attack { row: 3, name: "requests and cancels", run: cancels },
    Attack { row: 4, name: "callbacks never answered", run: stuck_callbacks },
    Attack { row: 5, name: "pipelining hog", run: pipelining },
    Attack { row: 6, name: "hello and FIN together", run: hello_fin },
    Attack { row: 8, name: "slowloris", run: slowloris },
    Attack { row: 9, name: "flood without reading", run: flood },
    Attack { row: 10, name: "method lookups", run: lookups },
    Attack { row: 11, name: "connection flood", run: connections },
    Attack { row: 12, name: "nesting 70 deep", run: nesting },
];

fn wait(stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        thread::sleep(Duration::from_millis(20));
    }
}

/// Row 1: connections announcing a 128 MiB frame, then sending one byte.
fn forged_lengths(addr: SocketAddr, stop: &AtomicBool, size: Size) -> String {
    let n = size.pick(50, 100);
    let held: Vec<TcpStream> = (0..n)
        .filter_map(|_| {
            let mut s = TcpStream::connect(addr).ok()?;
            let mut bytes = raw::hello();
            bytes.extend_from_slice(&(128u32 << 20).to_be_bytes());
            bytes.push(0x82);
            s.write_all(&bytes).ok()?;
            Some(s)
        })
        .collect();
    wait(stop);
    format!("{} connections held", held.len())
}

/// Row 2: frames of 16 MiB holding 16 million small integers, again and
/// again (each ends its connection).
fn small_integers(addr: SocketAddr, stop: &AtomicBool, size: Size) -> String {
    let count: u32 = size.pick(4 << 20, 16 << 20) as u32;
    let mut body = vec![0x9a];
    body.extend_from_slice(&count.to_be_bytes());
    body.resize(body.len() + count as usize, 0x01);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    let mut sent = 0;
    while !stop.load(Ordering::Acquire) {
        let Ok(mut s) = TcpStream::connect(addr) else { break };
        let _ = s.write_all(&raw::hello());
        // The server may end the connection before the frame is all sent.
        let _ = s.write_all(&frame);
        sent += 1;
        let _ = s.read_to_end(&mut Vec::new());
    }
    format!("{sent} frames of {count} integers begun")
}

/// Row 3: bursts of k requests followed by their k cancels, in one write.
fn cancels(addr: SocketAddr, stop: &AtomicBool, size: Size) -> String {
    let k = size.pick(5_000, 20_000) as u64;
    let Ok(client) = RawClient::connect(addr) else { return "could not connect".into() };
    let mut reader = client.stream.try_clone().expect("clone");
    let drain = thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    });
    let mut stream = client.stream.try_clone().expect("clone");
    let mut seq = 2;
    let mut bursts = 0;
    while !stop.load(Ordering::Acquire) {
        let mut burst = Vec::new();
        for s in seq..seq + k {
            burst.extend_from_slice(&raw::call(
                s,
                client.root,
                "add",
                vec![Cbor::Integer(1u64.into()), Cbor::Integer(1u64.into())],
            ));
        }
        for s in seq..seq + k {
            burst.extend_from_slice(&raw::cancel(s));
        }
        seq += k;
        if stream.write_all(&burst).is_err() {
            break;
        }
        bursts += 1;
    }
    let _ = stream.shutdown(Shutdown::Both);
    let _ = drain.join();
    format!("{bursts} bursts of {k} requests and {k} cancels")
}

/// Row 4: clients whose callback the server calls, and which never serve
/// their connection to answer it.
fn stuck_callbacks(addr: SocketAddr, stop: &AtomicBool, size: Size) -> String {
    let n = size.pick(20, 50);
    let held: Vec<(Connection, AsyncResult)> = (0..n)
        .filter_map(|_| {
            let conn = Builder::default().connect_tcp(addr).ok()?;
            let root = conn.root().ok()?;
            let cb = netref::callback(|x: i64| x);
            let pending = async_(&root).call_method("ask", (cb, 1));
            Some((conn, pending))
        })
        .collect();
    wait(stop);
    let answered = held.iter().filter(|(_, r)| r.ready()).count();
    format!("{} callbacks left unanswered ({answered} answered at the end)", held.len())
}

/// Row 5: clients pipelining 1,000 calls at a time as fast as they can,
/// reading their replies.
fn pipelining(addr: SocketAddr, stop: &AtomicBool, size: Size) -> String {
    let hogs = size.pick(1, 2);
    let total: usize = thread::scope(|s| {
        let workers: Vec<_> = (0..hogs)
            .map(|_| {
                s.spawn(|| {
                    let Ok(conn) = Builder::default().connect_tcp(addr) else { return 0 };
                    let Ok(root) = conn.root() else { return 0 };
                    let mut window = VecDeque::with_capacity(1000);
                    let mut done = 0;
                    while !stop.load(Ordering::Acquire) {
                        while window.len() < 1000 {
                            window.push_back(async_(&root).call_method("add", (1, 1)));
                        }
                        let oldest: AsyncResult = window.pop_front().expect("full");
                        if oldest.value_as::<i64>().is_err() {
                            break;
                        }
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    format!("{hogs} clients made {total} calls")
}

/// Row 6: connections sending their hello and FIN in one go.
fn hello_fin(addr: SocketAddr, stop: &AtomicBool, size: Size) -> String {
    let max = size.pick(200, 2_000);
    let mut closed = 0;
    let mut done = 0;
    while done < max && !stop.load(Ordering::Acquire) {
        let Ok(mut s) = TcpStream::connect(addr) else { break };
        let _ = s.write_all(&raw::hello());
        let _ = s.shutdown(Shutdown::Write);
        // The server must close its side too.
        if s.read_to_end(&mut Vec::new()).is_ok() {
            closed += 1;
        }
        done += 1;
    }
    format!("{closed} of {done} closed by the server")
}

/// Row 8: connections dribbling one byte of a frame every 200 ms.
fn slowloris(addr: SocketAddr, stop: &AtomicBool, size: Size) -> String {
    let n = size.pick(200, 2_000);
    let mut held: Vec<TcpStream> = (0..n)
        .filter_map(|_| {
            let mut s = TcpStream::connect(addr).ok()?;
            s.write_all(&raw::hello()).ok()?;
            Some(s)
        })
        .collect();
    let frame = (1u32 << 20).to_be_bytes();
    let mut byte = 0;
    while !stop.load(Ordering::Acquire) {
        for s in &mut held {
            let _ = s.write_all(&[frame[byte % 4]]);
        }
        byte += 1;
        thread::sleep(Duration::from_millis(200));
    }
    format!("{} connections dribbling", held.len())
}

/// Row 9: connections writing 64 KiB echo calls and never reading.
fn flood(addr: SocketAddr, stop: &AtomicBool, size: Size) -> String {
    let n = size.pick(4, 8);
    let cut: usize = thread::scope(|s| {
        let workers: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    let Ok(mut client) = RawClient::connect(addr) else { return 0 };
                    let text = Cbor::Text("x".repeat(64 << 10));
                    let mut seq = 2;
                    while !stop.load(Ordering::Acquire) {
                        if client
                            .stream
                            .write_all(&raw::call(seq, client.root, "echo", vec![text.clone()]))
                            .is_err()
                        {
                            return 1; // cut off by the server
                        }
                        seq += 1;
                    }
                    0
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    format!("{cut} of {n} flooders cut off")
}

/// Row 10: reading the same method as an attribute again and again.
fn lookups(addr: SocketAddr, stop: &AtomicBool, size: Size) -> String {
    let max = size.pick(50_000, 200_000);
    let Ok(conn) = Builder::default().connect_tcp(addr) else { return "could not connect".into() };
    let Ok(root) = conn.root() else { return "no root".into() };
    let mut held: Vec<RemoteObject> = Vec::new();
    while held.len() < max && !stop.load(Ordering::Acquire) {
        match root.getattr::<RemoteObject>("add") {
            Ok(m) => held.push(m),
            Err(_) => break,
        }
    }
    let distinct = held.iter().filter(|m| !m.same_as(&held[0])).count() + usize::from(!held.is_empty());
    wait(stop);
    format!("{} lookups, {distinct} distinct object(s)", held.len())
}

/// Row 11: many clients connecting and staying.
fn connections(addr: SocketAddr, stop: &AtomicBool, size: Size) -> String {
    let n = size.pick(500, 2_000);
    let held: Vec<Connection> = (0..n).filter_map(|_| Builder::default().connect_tcp(addr).ok()).collect();
    let served = held.iter().filter(|c| c.root().is_ok()).count();
    wait(stop);
    format!("{} connected, {served} served", held.len())
}

/// Row 12: a call whose argument is nested 70 deep.
fn nesting(addr: SocketAddr, stop: &AtomicBool, _size: Size) -> String {
    let Ok(conn) = Builder::default().connect_tcp(addr) else { return "could not connect".into() };
    let Ok(root) = conn.root() else { return "no root".into() };
    let mut deep = netref::Value::Integer(1);
    for _ in 0..70 {
        deep = netref::Value::Array(vec![deep]);
    }
    let refused = root.call_method::<i64>("add", (deep, 1)).is_err();
    let after = conn.ping().is_ok();
    wait(stop);
    format!("refused: {refused}; connection after: {}", if after { "open" } else { "closed" })
}
