pub struct Point {
    pub x: i64,
}

#[netref::service]
pub trait Plot {
    fn origin(&self) -> Point;
}

fn main() {}
