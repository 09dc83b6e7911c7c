use netref::typed::Event;

#[netref::service]
pub trait Sensors {
    #[netref(event)]
    fn readings(&self, sensor: String) -> Event<(String, f64)>;
}

fn main() {}
