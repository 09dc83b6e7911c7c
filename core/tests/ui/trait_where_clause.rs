#[netref::service]
pub trait Store<T>
where
    T: Clone,
{
    fn get(&self) -> T;
}

fn main() {}
