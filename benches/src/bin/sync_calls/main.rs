//! `n` synchronous calls over an in-memory pair served by a
//! `BgServingThread`: the program `scripts/instructions` runs under
//! callgrind twice (1,000 and 3,000 calls) to count the instructions one
//! synchronous call costs, a figure that does not depend on the machine's
//! load the way the harness's timings do.

use netref::{BgServingThread, Builder, ObjectBuilder, Service};

fn main() -> netref::Result<()> {
    let n: i64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse().map_err(|_| {
            netref::Error::from(std::io::Error::other(format!("not a count of calls: {arg:?}")))
        })?,
        None => 1000,
    };
    let calc = ObjectBuilder::new("Calc").method("add", |a: i64, b: i64| a + b).build();
    let (client, server) = Builder::default().pair(Builder::default().service(Service::object(calc)))?;
    let _serving = BgServingThread::new(&server);
    let root = client.root()?;
    let mut sum = 0i64;
    for i in 0..n {
        sum += root.call_method::<i64>("add", (i, 1))?;
    }
    // Printed, so the calls cannot be optimised away.
    println!("{sum}");
    Ok(())
}
