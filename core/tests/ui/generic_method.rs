#[netref::service]
pub trait Store {
    fn put<T: serde::Serialize>(&self, value: T);
}

fn main() {}
