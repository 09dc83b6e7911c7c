#[netref::service]
pub trait Sensors {
    #[netref(event)]
    fn readings(&self) -> Vec<(String, f64)>;
}

fn main() {}
