//! Runs `calloop-ticker` against an embedded server and against a separate
//! server process, and checks that ticks and pushed events both happen on
//! the tool's one loop, and that it stops after the requested events.

use demo_testkit::Proc;

const BIN: &str = env!("CARGO_BIN_EXE_calloop-ticker");

/// Follows the tool's output to its end: `events` events in order, ticks
/// between them, then the summary line and a clean exit.
fn check_tool(tool: &mut Proc, events: u64) {
    tool.expect("subscribed to 127.0.0.1:");
    let mut ticks = 0;
    let mut seen = 0;
    loop {
        let line = tool.expect_by("an event, a tick or the summary", |_| true);
        if line.starts_with("tick ") {
            ticks += 1;
            assert_eq!(line, format!("tick {ticks} ({seen} events so far)"), "{}", tool.dump());
        } else if line.starts_with("event ") {
            seen += 1;
            assert_eq!(line, format!("event {seen}: headline {seen}"), "{}", tool.dump());
        } else {
            assert_eq!(line, format!("done: {events} events, {ticks} ticks"), "{}", tool.dump());
            break;
        }
    }
    assert_eq!(seen, events);
    // Events are 20 ms apart and ticks 5 ms: the timer kept running
    // while the loop also served the connection.
    assert!(ticks >= 1, "no tick between events:\n{}", tool.dump());
    tool.finish_ok();
    assert!(!tool.transcript.last().unwrap().starts_with("event"), "an event after done:\n{}", tool.dump());
}

#[test]
fn embedded_server_pushes_events_between_ticks() {
    let mut tool = Proc::spawn("tool", BIN, &["--events", "3", "--tick-ms", "5", "--period-ms", "20"]);
    tool.expect("embedded server listening on 127.0.0.1:");
    check_tool(&mut tool, 3);
}

#[test]
fn separate_server_process_pushes_events_to_the_tool() {
    let mut server = Proc::spawn("server", BIN, &["server", "--addr", "127.0.0.1:0"]);
    let addr = server.listening_addr();
    let mut tool =
        Proc::spawn("tool", BIN, &["--addr", &addr, "--events", "4", "--tick-ms", "5", "--period-ms", "20"]);
    check_tool(&mut tool, 4);
    // The server outlives its client and serves the next one.
    let mut again =
        Proc::spawn("tool", BIN, &["--addr", &addr, "--events", "1", "--tick-ms", "5", "--period-ms", "20"]);
    check_tool(&mut again, 1);
}
