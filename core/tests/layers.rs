//! The core's layers import one way: wire <- value <- protocol <- connection
//! <- server. These checks read the source, so a `use` that turns an arrow
//! around fails here, not in a review.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `core/src/<layer>`.
fn sources(layer: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(layer), &mut out);
    assert!(!out.is_empty(), "no sources under src/{layer}");
    out
}

/// The lines of `layer`'s code (comments aside) that contain any of `needles`.
fn mentions(layer: &str, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for path in sources(layer) {
        let text = std::fs::read_to_string(&path).expect("readable source");
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if needles.iter().any(|needle| code.contains(needle)) {
                found.push(format!("{}:{}: {}", path.display(), n + 1, code));
            }
        }
    }
    found
}

/// What names the layers above `layer` in a path.
fn above(layer: &str) -> Vec<&'static str> {
    let order = ["wire", "value", "protocol", "connection", "server"];
    let at = order.iter().position(|l| *l == layer).expect("a layer");
    let mut needles = Vec::new();
    for upper in &order[at + 1..] {
        needles.push(match *upper {
            "value" => "crate::value",
            "protocol" => "crate::protocol",
            "connection" => "crate::connection",
            _ => "crate::server",
        });
    }
    // Items the crate root re-exports from the connection layer.
    if at < 3 {
        needles.extend(["crate::AsyncResult", "crate::Connection", "crate::Builder"]);
    }
    needles
}

#[test]
fn lower_layers_never_import_from_upper_ones() {
    for layer in ["wire", "value", "protocol", "connection"] {
        let found = mentions(layer, &above(layer));
        assert!(found.is_empty(), "src/{layer} imports from a layer above it:\n{}", found.join("\n"));
    }
}

#[test]
fn protocol_and_wire_hold_no_thread_locals() {
    for layer in ["wire", "protocol"] {
        let found = mentions(layer, &["thread_local!"]);
        assert!(found.is_empty(), "src/{layer} keeps state per thread:\n{}", found.join("\n"));
    }
}

#[test]
fn the_check_sees_an_upward_import() {
    // The check itself: the connection layer does import the protocol.
    assert!(!mentions("connection", &["crate::protocol"]).is_empty());
}
