//! `netref-gtk-filemon`: a GTK window listing a file's changes as a netref
//! server reports them. Run `netref-gtk-filemon --help` for the options.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use gtk::glib;
use gtk::prelude::*;
use netref_gtk_filemon::{spawn_server, FileMonWindow, Options};

const USAGE: &str = "\
usage: netref-gtk-filemon [--embedded | --addr HOST:PORT] [--file PATH] [--interval-ms N]
       netref-gtk-filemon --serve HOST:PORT

  --embedded       run a FileMonitor server inside this process (the default)
  --addr H:P       connect to a FileMonitor server instead (see --serve)
  --serve H:P      only run a FileMonitor server, without GTK, until killed
  --file PATH      the file to watch (default: a demo file in the temp dir)
  --interval-ms N  how often the server looks at the file (default 100)";

/// How long the server's checksum pretends to work: long enough to see the
/// window stay responsive meanwhile.
const CHECKSUM_DELAY: Duration = Duration::from_secs(2);

enum Mode {
    Embedded,
    Connect(String),
    Serve(String),
}

struct Args {
    mode: Mode,
    file: Option<PathBuf>,
    interval_ms: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { mode: Mode::Embedded, file: None, interval_ms: 100 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--embedded" => args.mode = Mode::Embedded,
            "--addr" => args.mode = Mode::Connect(value("--addr")?),
            "--serve" => args.mode = Mode::Serve(value("--serve")?),
            "--file" => args.file = Some(value("--file")?.into()),
            "--interval-ms" => {
                args.interval_ms =
                    value("--interval-ms")?.parse().map_err(|e| format!("--interval-ms: {e}"))?
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}\n");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netref-gtk-filemon: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let (addr, server) = match args.mode {
        Mode::Serve(addr) => {
            let (server, accepting) = spawn_server(addr.as_str(), || std::thread::sleep(CHECKSUM_DELAY))?;
            println!("FileMonitor server on {}", server.local_addr().map_or(addr, |a| a.to_string()));
            accepting.join().map_err(|_| "the server thread panicked")?;
            return Ok(());
        }
        Mode::Connect(addr) => (addr, None),
        Mode::Embedded => {
            // Stands in for a separate server process: its threads are the
            // server's, never the window's.
            let (server, accepting) = spawn_server("127.0.0.1:0", || std::thread::sleep(CHECKSUM_DELAY))?;
            let addr = server.local_addr().ok_or("the server has no address")?.to_string();
            (addr, Some((server, accepting)))
        }
    };
    let path = match args.file {
        Some(p) => p,
        None => {
            let p = std::env::temp_dir().join("netref-filemon-demo.txt");
            if !p.exists() {
                std::fs::write(&p, "edit me, or press \"Append a line\"\n")?;
            }
            p
        }
    };

    gtk::init()?;
    let conn = netref::Builder::default().connect_tcp(addr.as_str())?;
    let options = Options { interval: Duration::from_millis(args.interval_ms), ..Options::new(path) };
    let filemon = FileMonWindow::build(&conn, &options)?;
    drop(conn); // the window holds what it needs

    // One main loop serves GTK and the connection alike.
    let main_loop = glib::MainLoop::new(None, false);
    let quit = main_loop.clone();
    filemon.window.connect_close_request(move |_| {
        quit.quit();
        glib::Propagation::Proceed
    });
    filemon.window.present();
    main_loop.run();

    filemon.shutdown();
    if let Some((server, accepting)) = server {
        server.close();
        let _ = accepting.join();
    }
    Ok(())
}
