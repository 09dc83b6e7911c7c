#[netref::service]
pub trait Store {
    type Item;
    fn get(&self) -> u64;
}

fn main() {}
