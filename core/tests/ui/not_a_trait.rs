#[netref::service]
pub struct Files;

fn main() {}
