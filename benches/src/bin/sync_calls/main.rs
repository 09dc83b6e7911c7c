//! `n` synchronous calls over an in-memory pair served by a
//! `BgServingThread`: the program `scripts/instructions` runs under
//! callgrind twice (1,000 and 3,000 calls) to count the instructions one
//! synchronous call costs, a figure that does not depend on the machine's
//! load the way the harness's timings do. `typed` as a second argument
//! makes the same calls through a typed service and its proxy.

use netref::{BgServingThread, Builder, ObjectBuilder, Service};

/// The typed form of the same service.
#[netref::service]
trait Calc {
    /// `a + b`.
    fn add(&self, a: i64, b: i64) -> i64;
}

struct Adder;

impl Calc for Adder {
    fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
}

fn main() -> netref::Result<()> {
    let n: i64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse().map_err(|_| {
            netref::Error::from(std::io::Error::other(format!("not a count of calls: {arg:?}")))
        })?,
        None => 1000,
    };
    let typed = std::env::args().nth(2).as_deref() == Some("typed");
    let service = if typed {
        Service::typed::<dyn Calc>(Adder)
    } else {
        Service::object(ObjectBuilder::new("Calc").method("add", |a: i64, b: i64| a + b).build())
    };
    let (client, server) = Builder::default().pair(Builder::default().service(service))?;
    let _serving = BgServingThread::new(&server);
    let mut sum = 0i64;
    if typed {
        let calc = CalcProxy::root(&client)?;
        for i in 0..n {
            sum += calc.add(i, 1)?;
        }
    } else {
        let root = client.root()?;
        for i in 0..n {
            sum += root.call_method::<i64>("add", (i, 1))?;
        }
    }
    // Printed, so the calls cannot be optimised away.
    println!("{sum}");
    Ok(())
}
