#[netref::service]
pub trait Counter {
    fn make(n: u64) -> u64;
}

fn main() {}
