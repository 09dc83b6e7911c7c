#[netref::service]
pub trait Memory {
    unsafe fn peek(&self, at: u64) -> u8;
}

fn main() {}
