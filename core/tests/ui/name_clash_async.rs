#[netref::service]
pub trait Runner {
    fn async_(&self);
}

fn main() {}
