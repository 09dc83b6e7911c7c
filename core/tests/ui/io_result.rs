#[netref::service]
pub trait Files {
    fn stat(&self, path: String) -> std::io::Result<u64>;
}

fn main() {}
