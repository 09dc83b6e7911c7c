//! Addresses, and the raw-socket baseline: std only, blocking, the same
//! framing as netref (a 4-byte big-endian length, then the body),
//! TCP_NODELAY, one thread per connection on the server.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Instant;

use crate::common::{self, Opts, RAW_PAYLOAD};

/// Where a server listens: `tcp:HOST:PORT` or `unix:PATH`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Addr {
    Tcp(String),
    Unix(String),
}

impl Addr {
    pub(crate) fn parse(s: &str) -> Addr {
        match s.split_once(':') {
            Some(("tcp", rest)) => Addr::Tcp(rest.to_string()),
            Some(("unix", rest)) => Addr::Unix(rest.to_string()),
            _ => panic!("bad address {s:?} (want tcp:HOST:PORT or unix:PATH)"),
        }
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Tcp(a) => write!(f, "tcp:{a}"),
            Addr::Unix(p) => write!(f, "unix:{p}"),
        }
    }
}

/// A bound listener of either kind.
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Binds `transport` (`tcp` on a free loopback port, or `unix` at `path`).
    pub(crate) fn bind(transport: &str, path: Option<&str>) -> io::Result<(Listener, Addr)> {
        match transport {
            "tcp" => {
                let l = TcpListener::bind("127.0.0.1:0")?;
                let a = l.local_addr()?.to_string();
                Ok((Listener::Tcp(l), Addr::Tcp(a)))
            }
            "unix" => {
                let p = path.expect("a unix server needs --path");
                let _ = std::fs::remove_file(p);
                Ok((Listener::Unix(UnixListener::bind(p)?), Addr::Unix(p.to_string())))
            }
            t => panic!("unknown transport {t}"),
        }
    }

    fn accept(&self) -> io::Result<Box<dyn Duplex>> {
        Ok(match self {
            Listener::Tcp(l) => {
                let s = l.accept()?.0;
                s.set_nodelay(true)?;
                Box::new(s)
            }
            Listener::Unix(l) => Box::new(l.accept()?.0),
        })
    }
}

/// A blocking byte stream.
pub(crate) trait Duplex: Read + Write + Send {}
impl<T: Read + Write + Send> Duplex for T {}

/// Connects a blocking stream (TCP_NODELAY on TCP).
pub(crate) fn connect(addr: &Addr) -> io::Result<Box<dyn Duplex>> {
    Ok(match addr {
        Addr::Tcp(a) => {
            let s = TcpStream::connect(a)?;
            s.set_nodelay(true)?;
            Box::new(s)
        }
        Addr::Unix(p) => Box::new(UnixStream::connect(p)?),
    })
}

/// The raw echo server: every frame comes back unchanged.
pub(crate) fn server(opts: &Opts) -> io::Result<()> {
    let (listener, addr) = Listener::bind(opts.str("transport"), opts.get("path"))?;
    common::ready(&addr.to_string());
    loop {
        let mut s = listener.accept()?;
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            while read_frame(&mut s, &mut buf).is_ok() {
                if s.write_all(&buf).is_err() {
                    break;
                }
            }
        });
    }
}

/// Reads one frame, header included, into `buf`.
fn read_frame(s: &mut dyn Duplex, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.resize(4, 0);
    s.read_exact(&mut buf[..4])?;
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    buf.resize(4 + len, 0);
    s.read_exact(&mut buf[4..])
}

fn frame(payload: usize) -> Vec<u8> {
    let mut f = (payload as u32).to_be_bytes().to_vec();
    f.extend((0..payload).map(|i| i as u8));
    f
}

/// Raw clients: `latency` (36-byte ping-pong) and `payload` (1 MiB echo).
pub(crate) fn client(opts: &Opts) -> io::Result<()> {
    let addr = Addr::parse(opts.str("addr"));
    let mut s = connect(&addr)?;
    match opts.str("scenario") {
        "latency" => {
            let out = frame(RAW_PAYLOAD);
            let mut back = vec![0u8; out.len()];
            common::measure_latency(opts, || {
                s.write_all(&out).expect("write");
                s.read_exact(&mut back).expect("read");
            });
        }
        "payload" => {
            let size: usize = opts.num("size", 1 << 20);
            let out = frame(size);
            let mut back = Vec::with_capacity(out.len());
            payload_loop(opts, size, || {
                s.write_all(&out).expect("write");
                read_frame(&mut *s, &mut back).expect("read");
                assert_eq!(back.len(), out.len());
            });
        }
        other => panic!("raw: no scenario {other}"),
    }
    Ok(())
}

/// Echoes `size`-byte payloads for `--secs` after a warm-up; prints MiB/s
/// of payload echoed (one direction counted).
pub(crate) fn payload_loop(opts: &Opts, size: usize, mut echo: impl FnMut()) {
    let secs = opts.secs();
    for _ in 0..3 {
        echo();
    }
    let meter = common::CpuMeter::start(opts.num("server-pid", 0));
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < secs || n < 3 {
        echo();
        n += 1;
    }
    let t = start.elapsed().as_secs_f64();
    let (cpu_c, cpu_s) = meter.per_op(n);
    common::result(&[
        ("echoes", n as f64),
        ("mib_per_s", n as f64 * size as f64 / (1 << 20) as f64 / t),
        ("client_cpu_us", cpu_c),
        ("server_cpu_us", cpu_s),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_round_trip() {
        for s in ["tcp:127.0.0.1:9", "unix:/tmp/x.sock"] {
            assert_eq!(Addr::parse(s).to_string(), s);
        }
    }

    #[test]
    fn frames_round_trip() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let f = frame(RAW_PAYLOAD);
        assert_eq!(f.len(), 36);
        let mut a: Box<dyn Duplex> = Box::new(a);
        a.write_all(&f).unwrap();
        let mut buf = Vec::new();
        read_frame(&mut b, &mut buf).unwrap();
        assert_eq!(buf, f);
    }
}
