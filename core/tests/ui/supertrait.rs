#[netref::service]
pub trait Store: Clone {
    fn get(&self) -> u64;
}

fn main() {}
