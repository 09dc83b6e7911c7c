use netref::typed::Callback;

#[netref::service]
pub trait Files {
    fn watch(&self, on_change: Callback<u64>);
}

fn main() {}
