# The capnp-rpc baseline of the benchmark harness
# (benches/src/bin/harness/capnp_side.rs): the same add as every other
# implementation, and events as calls of a capability the client passes.
@0xb6a1c3d2e4f50617;

interface Bench {
  add @0 (a :Int64, b :Int64) -> (sum :Int64);
  # Calls callback.call(i) for i in 0..n, at most `window` calls in flight;
  # answers once every call has been answered.
  emit @1 (callback :Callback, n :UInt64, window :UInt32) -> (n :UInt64);
}

interface Callback {
  call @0 (i :UInt64) -> ();
}
