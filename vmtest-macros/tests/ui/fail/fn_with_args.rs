use vmtest_harness::vmtest;

#[vmtest]
fn with_args(_a: u32, _b: &str) {}

#[vmtest]
fn generic<T: Default>() {}

fn main() {}
