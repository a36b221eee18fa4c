//! Compile-time behaviour of `#[vmtest]`: the errors users see (`ui/fail`,
//! with their expected `.stderr`), and what valid uses register (`ui/pass`,
//! which inspect the registry without booting anything).

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
