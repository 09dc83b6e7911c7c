#[netref::service]
pub trait Store {
    const SIZE: usize;
    fn get(&self) -> u64;
}

fn main() {}
