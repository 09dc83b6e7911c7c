#[netref::service(name = "Files")]
pub trait Files {
    fn stat(&self, path: String) -> u64;
}

fn main() {}
