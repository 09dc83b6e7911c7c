//! The README's "Start here" shows the crate docs' FileMonitor example as
//! it is: both come from `core/examples/filemonitor.rs`, which is built and
//! run as an example and a doctest, so the README cannot drift from it.

#[test]
fn readme_shows_the_filemonitor_example_as_it_is() {
    let readme = include_str!("../../README.md");
    let example = include_str!("../examples/filemonitor.rs");
    assert!(
        readme.contains(&format!("```rust\n{example}```")),
        "README.md's FileMonitor block differs from core/examples/filemonitor.rs: paste the file into it"
    );
}
