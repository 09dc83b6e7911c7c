pub struct Point {
    pub x: i64,
}

#[netref::service]
pub trait Plot {
    fn draw(&self, at: Point);
}

fn main() {}
