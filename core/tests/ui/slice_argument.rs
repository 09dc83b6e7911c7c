#[netref::service]
pub trait Files {
    fn write(&self, data: &[u8]);
}

fn main() {}
