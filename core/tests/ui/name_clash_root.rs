#[netref::service]
pub trait Tree {
    fn root(&self) -> String;
}

fn main() {}
