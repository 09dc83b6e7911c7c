#[netref::service]
pub trait Files {
    fn sizes(&self) -> impl Iterator<Item = u64>;
}

fn main() {}
