#[netref::service]
pub trait Files {
    fn watch(&self, on_change: impl Fn(u64) + Send);
}

fn main() {}
