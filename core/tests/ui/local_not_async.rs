#[netref::service]
pub trait Rounds {
    #[netref(local)]
    fn rounds(&self, n: u32) -> u32;
}

fn main() {}
