#[netref::service]
pub trait Store<'a> {
    fn get(&self) -> u64;
}

fn main() {}
