#[netref::service]
pub trait Counter {
    fn finish(self: std::sync::Arc<Self>) -> u64;
}

fn main() {}
