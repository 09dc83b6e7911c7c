//! The client side: a GTK 4 window fed by a netref connection that the GTK
//! main loop itself serves (through `netref-glib`), with no extra thread.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gtk::glib;
use gtk::prelude::*;
use netref::typed::Obj;
use netref::Connection;
use netref_glib::Attached;

use crate::service::{FileMonitor, FileMonitorServiceProxy, Stat};

/// What the window watches and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// The file to watch (a path on the server's machine).
    pub path: PathBuf,
    /// How often the server looks at the file.
    pub interval: Duration,
    /// How long a checksum may take before the window gives up on it.
    pub checksum_timeout: Duration,
}

impl Options {
    /// Watches `path` every 100 ms; checksums time out after 10 s.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Options {
            path: path.into(),
            interval: Duration::from_millis(100),
            checksum_timeout: Duration::from_secs(10),
        }
    }
}

/// The window and the widgets a test (or a caller) may inspect.
pub struct FileMonWindow {
    /// The top-level window.
    pub window: gtk::Window,
    /// One line per change, newest last: the model behind [`list`](Self::list).
    pub events: gtk::StringList,
    /// Shows [`events`](Self::events).
    pub list: gtk::ListBox,
    /// Appends a line to the watched file, to cause an event.
    pub append_button: gtk::Button,
    /// Starts an asynchronous checksum on the server.
    pub checksum_button: gtk::Button,
    /// Where the checksum (or its error) appears.
    pub result: gtk::Label,
    monitor: Obj<dyn FileMonitor>,
    // Last: dropping it detaches the connection from the main loop.
    attached: Attached,
}

impl FileMonWindow {
    /// Builds the window on the GTK thread (after `gtk::init`), attaches
    /// `conn` to the default main context and asks the server to watch the
    /// file. The window is not shown yet: call `window.present()`.
    pub fn build(conn: &Connection, options: &Options) -> netref::Result<FileMonWindow> {
        let path = options.path.to_string_lossy().into_owned();

        // From here on the GTK main loop reads, writes and serves the
        // connection: the server's callbacks run on this thread, between
        // redraws, so they may touch widgets directly.
        let attached = netref_glib::attach(conn, &glib::MainContext::default())?;
        let service = FileMonitorServiceProxy::root(conn)?;

        let events = gtk::StringList::new(&[]);
        let list = gtk::ListBox::new();
        list.set_selection_mode(gtk::SelectionMode::None);
        list.bind_model(Some(&events), |item| {
            let text = item.downcast_ref::<gtk::StringObject>().map(|s| s.string()).unwrap_or_default();
            let label = gtk::Label::new(Some(&text));
            label.set_xalign(0.0);
            label.upcast()
        });
        list.set_placeholder(Some(&gtk::Label::new(Some(
            "No changes yet: edit the file, or press \"Append a line\".",
        ))));

        // A GTK model is neither `Send` nor `Sync`; netref_glib's typed
        // callback pins the closure to this thread, where the attached
        // connection serves the server's calls.
        let model = events.clone();
        let ctx = glib::MainContext::default();
        let on_change = netref_glib::typed_callback(&ctx, move |old: Option<Stat>, new: Option<Stat>| {
            let time = glib::DateTime::now_local().and_then(|t| t.format("%H:%M:%S")).unwrap_or_default();
            model.append(&format!("{time}  {}", describe(old, new)));
        });
        // A synchronous call: it only waits for the first look at the file.
        let monitor = service.file_monitor(path.clone(), on_change, options.interval.as_millis() as u64)?;

        let append_button = gtk::Button::with_label("Append a line");
        append_button.set_tooltip_text(Some("Writes to the watched file (on this machine)"));
        let file = options.path.clone();
        append_button.connect_clicked(move |_| {
            if let Err(e) = append_line(&file) {
                eprintln!("filemon: cannot write {}: {e}", file.display());
            }
        });

        let checksum_button = gtk::Button::with_label("Checksum (slow, async)");
        let result = gtk::Label::new(Some("checksum: not asked yet"));
        result.set_xalign(0.0);
        result.set_selectable(true);
        let timeout = options.checksum_timeout;
        let label = result.clone();
        checksum_button.connect_clicked(move |button| {
            button.set_sensitive(false);
            label.set_text("checksum: computing on the server…");
            // `timed` sends the call and returns at once; the reply (or the
            // timeout, armed as a main-loop timer by netref-glib) completes
            // the future, which then resumes on this thread.
            let reply = service.timed(timeout).checksum(path.clone());
            let (button, label) = (button.clone(), label.clone());
            glib::MainContext::default().spawn_local(async move {
                let text = match reply.await {
                    Ok(c) => format!("checksum: fnv1a {} over {} bytes ({} ms)", c.fnv1a, c.bytes, c.millis),
                    Err(e) => format!("checksum failed: {e}"),
                };
                label.set_text(&text);
                button.set_sensitive(true);
            });
        });

        let header =
            gtk::Label::new(Some(&format!("Watching {} via {}", options.path.display(), conn.peer())));
        header.set_xalign(0.0);
        header.set_wrap(true);
        let status = header.clone();
        // Runs on this thread whoever notices the close (a widget is not
        // `Send`: local_callback carries it to the context's thread).
        conn.on_close(netref_glib::local_callback(&ctx, move |_: &netref::CloseReason| {
            status.set_text("The server went away: no more events.")
        }));
        let scroller = gtk::ScrolledWindow::builder().child(&list).vexpand(true).build();
        let buttons = gtk::Box::new(gtk::Orientation::Horizontal, 6);
        buttons.append(&append_button);
        buttons.append(&checksum_button);
        let column = gtk::Box::new(gtk::Orientation::Vertical, 6);
        column.set_margin_top(12);
        column.set_margin_bottom(12);
        column.set_margin_start(12);
        column.set_margin_end(12);
        column.append(&header);
        column.append(&scroller);
        column.append(&buttons);
        column.append(&result);

        let window = gtk::Window::builder()
            .title("netref file monitor")
            .default_width(520)
            .default_height(360)
            .child(&column)
            .build();

        Ok(FileMonWindow { window, events, list, append_button, checksum_button, result, monitor, attached })
    }

    /// The event lines shown, oldest first.
    pub fn event_lines(&self) -> Vec<String> {
        (0..self.events.n_items()).filter_map(|i| self.events.string(i)).map(String::from).collect()
    }

    /// Stops the server's monitor and closes the connection (the window
    /// itself is left to GTK: it is usually closed already).
    pub fn shutdown(self) {
        if let Err(e) = self.monitor.stop() {
            eprintln!("filemon: stopping the monitor failed: {e}");
        }
        let conn = self.attached.connection().clone();
        drop(self);
        conn.close();
    }
}

/// One line describing a change, e.g. `size 4 → 8 bytes`.
pub fn describe(old: Option<Stat>, new: Option<Stat>) -> String {
    match (old, new) {
        (None, None) => "still missing".into(),
        (None, Some(n)) => format!("created ({} bytes)", n.size),
        (Some(_), None) => "deleted".into(),
        (Some(o), Some(n)) => {
            let mut parts = Vec::new();
            if o.inode != n.inode {
                parts.push("replaced".to_string());
            }
            if o.size != n.size {
                parts.push(format!("size {} → {} bytes", o.size, n.size));
            }
            if o.mode != n.mode {
                parts.push(format!("mode {:o} → {:o}", o.mode & 0o7777, n.mode & 0o7777));
            }
            if parts.is_empty() {
                parts.push("modified".into());
            }
            parts.join(", ")
        }
    }
}

/// Appends a timestamped line to `path`.
pub fn append_line(path: &Path) -> std::io::Result<()> {
    let now = glib::DateTime::now_local().and_then(|t| t.format("%H:%M:%S")).unwrap_or_default();
    writeln!(OpenOptions::new().append(true).create(true).open(path)?, "appended at {now}")
}
