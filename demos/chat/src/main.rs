//! # chat
//!
//! A chat room. The server is single-threaded and poll-driven
//! ([`netref_polling::Server`]): one thread accepts every client, serves
//! every request and sends every broadcast. A client joins with a name and a
//! callback; each message said in the room reaches every member through the
//! callback it registered, the sender included (its echo is its receipt).
//!
//! ```text
//! cargo run -p chat -- server [--addr 127.0.0.1:18873]
//! cargo run -p chat -- client [--addr 127.0.0.1:18873] --name alice
//! ```
//!
//! The client sends each line typed on stdin; end of input leaves the room.

use std::error::Error;
use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use netref::{async_, callback, BgServingThread, Builder, Connection, ObjectBuilder, RemoteObject, Service};

type Res<T> = Result<T, Box<dyn Error>>;

const USAGE: &str = "usage:
  chat server [--addr ADDR]
  chat client [--addr ADDR] --name NAME";

const DEFAULT_ADDR: &str = "127.0.0.1:18873";

/// One member of the room.
struct Member {
    id: u64,
    name: String,
    /// The client's callback: `(from, text)`.
    inbox: RemoteObject,
    /// The member's connection, to notice it has closed.
    conn: netref::WeakConnection,
}

/// Everyone in the room. Only the server's thread touches it; the mutex is
/// there because netref objects must be `Send + Sync`.
#[derive(Default)]
struct Room {
    members: Vec<Member>,
    next_id: u64,
}

type SharedRoom = Arc<Mutex<Room>>;

fn lock(room: &SharedRoom) -> std::sync::MutexGuard<'_, Room> {
    room.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends `(from, text)` to every member but `skip`. A member whose callback
/// fails (its connection is gone, or it raised) is dropped from the room.
fn broadcast(room: &SharedRoom, from: &str, text: &str, skip: Option<u64>) {
    // Calls go out without the lock held: a failed call runs its callback
    // at once, and that callback locks the room.
    let targets: Vec<(u64, RemoteObject)> =
        lock(room).members.iter().filter(|m| Some(m.id) != skip).map(|m| (m.id, m.inbox.clone())).collect();
    for (id, inbox) in targets {
        // Asynchronous: one slow client must not hold up the room.
        let sent = async_(&inbox).call((from, text));
        let room = room.clone();
        sent.add_callback(move |r| {
            if r.error() {
                leave(&room, |m| m.id == id, "its callback failed");
            }
        });
    }
}

/// Drops the members matching `gone` and tells the others.
fn leave(room: &SharedRoom, gone: impl Fn(&Member) -> bool, why: &str) {
    let left: Vec<Member> = {
        let mut r = lock(room);
        let (left, stay) = std::mem::take(&mut r.members).into_iter().partition(|m| gone(m));
        r.members = stay;
        left
    };
    for m in left {
        let remaining = lock(room).members.len();
        println!("{} left ({why}); {remaining} in the room", m.name);
        broadcast(room, "*", &format!("{} left", m.name), None);
    }
}

/// The service: each connection's root is a door into the one room.
fn chat_service(room: SharedRoom) -> Service {
    let on_gone = room.clone();
    Service::new(move |conn: &Connection| {
        // Weak: the service must not keep its own connection open.
        let weak = conn.downgrade();
        let (join_room, say_room) = (room.clone(), room.clone());
        let my_id = Arc::new(Mutex::new(None::<u64>));
        let said_by = my_id.clone();
        ObjectBuilder::new("ChatRoom")
            .try_method("join", move |name: String, inbox: RemoteObject| -> Result<Vec<String>, String> {
                let mut id = my_id.lock().unwrap_or_else(|e| e.into_inner());
                if id.is_some() {
                    return Err("already joined".into());
                }
                let others: Vec<String> = {
                    let mut r = lock(&join_room);
                    let others = r.members.iter().map(|m| m.name.clone()).collect();
                    r.next_id += 1;
                    let new_id = r.next_id;
                    *id = Some(new_id);
                    r.members.push(Member { id: new_id, name: name.clone(), inbox, conn: weak.clone() });
                    others
                };
                println!("{name} joined; {} in the room", others.len() + 1);
                // The newcomer learns who is here from the reply, the others
                // from an event.
                broadcast(&join_room, "*", &format!("{name} joined"), *id);
                Ok(others)
            })
            .try_method("say", move |text: String| -> Result<(), String> {
                let id = (*said_by.lock().unwrap_or_else(|e| e.into_inner())).ok_or("join first")?;
                let name = lock(&say_room).members.iter().find(|m| m.id == id).map(|m| m.name.clone());
                let name = name.ok_or("you have left the room")?;
                broadcast(&say_room, &name, &text, None);
                Ok(())
            })
            .build()
    })
    .on_disconnect(move |conn| leave(&on_gone, |m| m.conn.is(conn), "disconnected"))
}

fn server(addr: &str) -> Res<()> {
    let room = SharedRoom::default();
    let mut server = netref_polling::Server::bind_tcp(addr, Builder::default().service(chat_service(room)))?;
    println!("listening on {}", server.local_addr().ok_or("no TCP address")?);
    server.run()?;
    Ok(())
}

fn client(addr: &str, name: &str) -> Res<()> {
    let conn = netref::connect(addr)?;
    let on_message = callback(|from: String, text: String| {
        let line = if from == "*" { format!("* {text}\n") } else { format!("<{from}> {text}\n") };
        let mut out = io::stdout().lock();
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    });
    let room = conn.root()?;
    let others: Vec<String> = room.call_method("join", (name, on_message))?;
    if others.is_empty() {
        println!("joined as {name}; nobody else is here");
    } else {
        println!("joined as {name}; here: {}", others.join(", "));
    }
    // From now on only this thread serves the connection, so messages print
    // in the order the server sent them.
    let bgsrv = BgServingThread::new(&conn);
    for line in io::stdin().lock().lines() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        // Not waited for: the echo from the room is the receipt, and this
        // thread never serves the connection (see above).
        let said = async_(&room).call_method("say", (line,));
        said.add_callback(|r| {
            if let Err(e) = r.value() {
                eprintln!("not sent: {e}");
            }
        });
    }
    bgsrv.stop()?;
    conn.close();
    println!("bye");
    Ok(())
}

/// The value following `--name`, if given.
fn opt(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = opt(&args, "--addr").unwrap_or_else(|| DEFAULT_ADDR.into());
    let result = match args.first().map(String::as_str) {
        _ if args.iter().any(|a| a == "--help" || a == "-h") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("server") => server(&addr),
        Some("client") => match opt(&args, "--name") {
            Some(name) => client(&addr, &name),
            None => Err("client needs --name".into()),
        },
        _ => Err("give a command: server or client".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: {e}\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}
