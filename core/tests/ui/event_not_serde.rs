use netref::typed::Event;

pub struct Reading {
    pub degrees: f64,
}

#[netref::service]
pub trait Sensors {
    #[netref(event)]
    fn readings(&self) -> Event<Reading>;
}

fn main() {}
