#[netref::service]
pub trait Clock {
    fn timed(&self) -> u64;
}

fn main() {}
