#[derive(serde::Serialize, serde::Deserialize)]
pub struct Refused;

#[netref::service]
pub trait Files {
    fn stat(&self, path: String) -> Result<u64, Refused>;
}

fn main() {}
