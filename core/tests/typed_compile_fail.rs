//! What `#[netref::service]` refuses, and how it says so: each case in
//! `tests/ui/` fails to compile with the error its `.stderr` holds,
//! pointing at the offending token and naming the fix. Regenerate the
//! files after a deliberate change with `TRYBUILD=overwrite cargo test -p
//! netref --test typed_compile_fail`, then read every diff.

#[test]
fn the_macro_refuses_what_cannot_cross_the_wire() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
