#[netref::service]
pub trait Counter {
    fn finish(self) -> u64;
}

fn main() {}
