//! Generates the capnp-rpc baseline's code from `capnp/bench.capnp` (needs
//! the `capnp` compiler: Debian's `capnproto`, which scripts/test.sh
//! installs).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=capnp/bench.capnp");
    capnpc::CompilerCommand::new()
        .src_prefix("capnp")
        // Included by the harness's capnp_side module (capnp::generated_code!).
        .default_parent_module(vec!["capnp_side".into()])
        .file("capnp/bench.capnp")
        .run()?;
    Ok(())
}
