#[netref::service]
pub trait Files {
    fn watch(&self, #[netref(optional)] path: String);
}

fn main() {}
