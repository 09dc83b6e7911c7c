#[netref::service]
pub trait Files {
    fn name(&self) -> &str;
}

fn main() {}
