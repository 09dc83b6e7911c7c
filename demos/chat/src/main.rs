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
//! Over TLS: `make-certs DIR` makes a certificate authority and a server
//! certificate for `localhost` and 127.0.0.1 in DIR (fresh keys, for the
//! demo); `--tls DIR` then makes the server serve TLS with them, and the
//! client trust that authority alone:
//!
//! ```text
//! cargo run -p chat -- make-certs /tmp/chat-tls
//! cargo run -p chat -- server --tls /tmp/chat-tls
//! cargo run -p chat -- client --tls /tmp/chat-tls --name alice
//! ```
//!
//! The room is a typed service ([`ChatRoom`]); the client calls it through
//! the generated `ChatRoomProxy`, and its inbox is a plain closure. The
//! client sends each line typed on stdin; end of input leaves the room.

use std::error::Error;
use std::io::{self, BufRead, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use netref::tls::{TlsAcceptor, TlsConnector};
use netref::typed::{CallError, Callback};
use netref::{BgServingThread, Builder, Connection, Service};
use serde::{Deserialize, Serialize};

type Res<T> = Result<T, Box<dyn Error>>;

const USAGE: &str = "usage:
  chat server [--addr ADDR] [--tls DIR]
  chat client [--addr ADDR] [--tls DIR] --name NAME
  chat make-certs DIR   a CA (ca.pem) and a certificate for localhost (server.pem, server.key)";

const DEFAULT_ADDR: &str = "127.0.0.1:18873";

/// Why the room refused: the client gets it back as itself.
#[derive(Debug, Serialize, Deserialize)]
pub enum Refused {
    /// `join` a second time on one connection.
    AlreadyJoined,
    /// `say` before `join`.
    JoinFirst,
    /// `say` after the room dropped this member.
    Left,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::AlreadyJoined => "already joined",
            Refused::JoinFirst => "join first",
            Refused::Left => "you have left the room",
        })
    }
}

impl Error for Refused {}

/// A client's door into the room, one per connection.
#[netref::service]
pub trait ChatRoom {
    /// Joins as `name`; every message said in the room then reaches
    /// `inbox(from, text)`. Returns who was here already.
    fn join(&self, name: String, inbox: Callback<(String, String)>) -> Result<Vec<String>, Refused>;
    /// Says `text` to everyone in the room, this member included.
    fn say(&self, text: String) -> Result<(), Refused>;
}

/// One member of the room.
struct Member {
    id: u64,
    name: String,
    /// The client's callback: `(from, text)`.
    inbox: Callback<(String, String)>,
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
    let targets: Vec<(u64, Callback<(String, String)>)> =
        lock(room).members.iter().filter(|m| Some(m.id) != skip).map(|m| (m.id, m.inbox.clone())).collect();
    for (id, inbox) in targets {
        // Asynchronous: one slow client must not hold up the room.
        let sent = inbox.call_async((from.to_string(), text.to_string()));
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

/// One connection's door: which member it is, once joined.
struct Door {
    room: SharedRoom,
    /// Weak: the service must not keep its own connection open.
    conn: netref::WeakConnection,
    member: Mutex<Option<u64>>,
}

impl ChatRoom for Door {
    fn join(&self, name: String, inbox: Callback<(String, String)>) -> Result<Vec<String>, Refused> {
        let mut id = self.member.lock().unwrap_or_else(|e| e.into_inner());
        if id.is_some() {
            return Err(Refused::AlreadyJoined);
        }
        let others: Vec<String> = {
            let mut r = lock(&self.room);
            let others = r.members.iter().map(|m| m.name.clone()).collect();
            r.next_id += 1;
            let new_id = r.next_id;
            *id = Some(new_id);
            r.members.push(Member { id: new_id, name: name.clone(), inbox, conn: self.conn.clone() });
            others
        };
        println!("{name} joined; {} in the room", others.len() + 1);
        // The newcomer learns who is here from the reply, the others from
        // an event.
        broadcast(&self.room, "*", &format!("{name} joined"), *id);
        Ok(others)
    }

    fn say(&self, text: String) -> Result<(), Refused> {
        let id = (*self.member.lock().unwrap_or_else(|e| e.into_inner())).ok_or(Refused::JoinFirst)?;
        let name = lock(&self.room).members.iter().find(|m| m.id == id).map(|m| m.name.clone());
        let name = name.ok_or(Refused::Left)?;
        broadcast(&self.room, &name, &text, None);
        Ok(())
    }
}

/// The service: each connection's root is a door into the one room.
fn chat_service(room: SharedRoom) -> Service {
    let on_gone = room.clone();
    Service::new(move |conn: &Connection| {
        let door = Door { room: room.clone(), conn: conn.downgrade(), member: Mutex::new(None) };
        netref::typed::export::<dyn ChatRoom>(door)
    })
    .on_disconnect(move |conn| leave(&on_gone, |m| m.conn.is(conn), "disconnected"))
}

fn server(addr: &str, tls: Option<&Path>) -> Res<()> {
    let room = SharedRoom::default();
    let mut builder = Builder::default().service(chat_service(room));
    if let Some(dir) = tls {
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()))
        };
        builder = builder.tls(TlsAcceptor::new(&read("server.pem")?, &read("server.key")?)?);
    }
    let mut server = netref_polling::Server::bind_tcp(addr, builder)?;
    let over = if tls.is_some() { " (TLS)" } else { "" };
    println!("listening on {}{over}", server.local_addr().ok_or("no TCP address")?);
    server.run()?;
    Ok(())
}

fn client(addr: &str, name: &str, tls: Option<&Path>) -> Res<()> {
    let conn = match tls {
        None => netref::connect(addr)?,
        Some(dir) => {
            let ca = dir.join("ca.pem");
            let connector =
                TlsConnector::with_roots(&std::fs::read(&ca).map_err(|e| format!("{}: {e}", ca.display()))?)?;
            // The server's certificate must be valid for the host named.
            let (host, port) = addr.rsplit_once(':').ok_or("--addr is HOST:PORT")?;
            Builder::default().connect_tls(&connector, host, port.parse()?)?
        }
    };
    let on_message = |from: String, text: String| {
        let line = if from == "*" { format!("* {text}\n") } else { format!("<{from}> {text}\n") };
        let mut out = io::stdout().lock();
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    };
    let room = ChatRoomProxy::root(&conn)?;
    let others = room.join(name.to_string(), on_message)?;
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
        let said = room.async_().say(line);
        said.add_callback(|r| match r.value() {
            Ok(()) => {}
            Err(CallError::App(why)) => eprintln!("not sent: {why}"),
            Err(e) => eprintln!("not sent: {e}"),
        });
    }
    bgsrv.stop()?;
    conn.close();
    println!("bye");
    Ok(())
}

/// Writes a fresh certificate authority (`ca.pem`) and a server certificate
/// it signed for `localhost` and 127.0.0.1 (`server.pem`, `server.key`)
/// into `dir`: for the demo; a real server has its own.
fn make_certs(dir: &Path) -> Res<()> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "chat demo CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?
        .signed_by(&key, &ca)?;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    std::fs::write(dir.join("server.pem"), cert.pem())?;
    std::fs::write(dir.join("server.key"), key.serialize_pem())?;
    println!("wrote ca.pem, server.pem and server.key in {}", dir.display());
    Ok(())
}

/// The value following `--name`, if given.
fn opt(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = opt(&args, "--addr").unwrap_or_else(|| DEFAULT_ADDR.into());
    let tls = opt(&args, "--tls").map(std::path::PathBuf::from);
    let tls = tls.as_deref();
    let result = match args.first().map(String::as_str) {
        _ if args.iter().any(|a| a == "--help" || a == "-h") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("server") => server(&addr, tls),
        Some("client") => match opt(&args, "--name") {
            Some(name) => client(&addr, &name, tls),
            None => Err("client needs --name".into()),
        },
        Some("make-certs") => match args.get(1) {
            Some(dir) => make_certs(Path::new(dir)),
            None => Err("make-certs needs a directory".into()),
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
