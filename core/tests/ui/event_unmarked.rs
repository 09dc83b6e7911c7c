use netref::typed::Event;

#[netref::service]
pub trait Sensors {
    fn readings(&self) -> Event<(String, f64)>;
}

fn main() {}
