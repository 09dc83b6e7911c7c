#[netref::service]
pub trait Files {
    fn stat(&self, path: &str) -> u64;
}

fn main() {}
