#[derive(serde::Serialize, serde::Deserialize)]
pub enum Mode {
    Fast,
}

#[netref::service]
pub trait Files {
    fn copy(&self, to: String, #[netref(default)] mode: Mode);
}

fn main() {}
