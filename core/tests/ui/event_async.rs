use netref::typed::Event;

#[netref::service]
pub trait Sensors {
    #[netref(event)]
    async fn readings(&self) -> Event<(String, f64)>;
}

fn main() {}
