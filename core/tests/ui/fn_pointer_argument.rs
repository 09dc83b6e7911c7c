#[netref::service]
pub trait Files {
    fn watch(&self, on_change: fn(u64));
}

fn main() {}
