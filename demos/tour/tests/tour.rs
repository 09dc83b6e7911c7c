//! Runs `tour` and checks that its transcript tells the tutorial's story,
//! step by step and in order.

use demo_testkit::Proc;

#[test]
fn tour_replays_the_tutorial_session() {
    let mut tour = Proc::spawn("tour", env!("CARGO_BIN_EXE_tour"), &[]);
    tour.expect("# server listening on 127.0.0.1:");

    // An async sleep: pending and not ready at first, then a value, then ready.
    tour.expect(">>> let tour = TourServiceProxy::root(&conn)?;");
    tour.expect(">>> let res = asleep.sleep(");
    tour.expect_exact(">>> res");
    tour.expect_exact("<AsyncResult object (pending)>");
    tour.expect_exact(">>> res.ready()");
    tour.expect_exact("false");
    tour.expect(">>> res.value()?");
    tour.expect_exact("()");
    tour.expect_exact(">>> res.ready()");
    tour.expect_exact("true");
    tour.expect_exact(">>> res");
    tour.expect_exact("<AsyncResult object (ready)>");

    // A remote int(): 8, then the remote error printed the way RPyC prints it.
    tour.expect(">>> x.value()?");
    tour.expect_exact("8");
    tour.expect(">>> let x = aint.int(\"this is not a valid number\".into());");
    tour.expect_exact(">>> x.wait()?;");
    tour.expect_exact(">>> x.ready()");
    tour.expect_exact("true");
    tour.expect_exact(">>> x.error()");
    tour.expect_exact("true");
    // Typed: the method's own error, as itself.
    tour.expect(">>> x.value()  // the method's own error");
    tour.expect_exact(
        "Err: ValueError: invalid literal for int() with base 10: 'this is not a valid number'",
    );
    // The same reply as netref's error: RPyC's print, with the traceback.
    tour.expect(">>> x.value_as::<i64>()");
    tour.expect_exact(
        "Err: ValueError: invalid literal for int() with base 10: 'this is not a valid number'",
    );
    tour.expect_exact("");
    tour.expect_exact("========= Remote Traceback (1) =========");
    tour.expect_exact("Traceback (most recent call last):");
    tour.expect("in TourService.int()");

    // timed: under the limit works, over it fails with AsyncResultTimeout.
    tour.expect("// 3 seconds: works");
    tour.expect_exact("Ok(())");
    tour.expect("// 10 seconds: fails");
    tour.expect_exact("Err: result expired after 300ms (AsyncResultTimeout)");

    // add_callback: the callback runs when the reply arrives.
    tour.expect(">>> res.add_callback(");
    tour.expect_exact(">>> res.wait()?;");
    tour.expect_exact("callback: the reply is here (error: false)");

    // set_expiry: the result expires, is not ready and never will be.
    tour.expect(">>> res.set_expiry(100ms);");
    tour.expect_exact(">>> res.wait()");
    tour.expect_exact("Err: result expired after 100ms (AsyncResultTimeout)");
    tour.expect_exact(">>> res.expired()");
    tour.expect_exact("true");
    tour.expect_exact(">>> res.ready()");
    tour.expect_exact("false");

    // Events: the server calls the client's closure, three times, in order.
    tour.expect(">>> tour.ticker(");
    tour.expect("# ... the main thread is free");
    tour.expect_exact("tick 1 from the server");
    tour.expect_exact("tick 2 from the server");
    tour.expect_exact("tick 3 from the server");

    // The dynamic API underneath calls the same server by name.
    tour.expect("# underneath: the dynamic API");
    tour.expect(">>> root.call_method::<i64>(\"int\", (\"42\",))?");
    tour.expect_exact("42");
    tour.expect(">>> netref::async_(&root).call_method(\"int\", (\"7\",))");
    tour.expect_exact("7");
    tour.expect(">>> root.dir()?");
    tour.expect_exact("[\"int\", \"sleep\", \"ticker\"]");
    tour.expect_exact(">>> bgsrv.stop()?;");
    tour.expect_exact(">>> conn.close();");
    tour.expect_exact("");
    tour.expect_exact("# done");
    tour.finish_ok();
}
