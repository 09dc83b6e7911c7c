#[netref::service]
pub trait Geometry {
    fn area(&self, (w, h): (u64, u64)) -> u64;
}

fn main() {}
