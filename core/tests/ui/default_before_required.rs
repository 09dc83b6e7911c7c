#[netref::service]
pub trait Files {
    fn copy(&self, #[netref(default)] mode: u32, to: String);
}

fn main() {}
