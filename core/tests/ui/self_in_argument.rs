#[netref::service]
pub trait Node {
    fn link(&self, other: Box<Self>);
}

fn main() {}
