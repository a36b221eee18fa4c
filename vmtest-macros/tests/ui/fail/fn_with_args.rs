use vmtest_harness::vmtest;

#[vmtest]
fn with_args(a: u32, b: &str) {}

#[vmtest]
fn generic<T: Default>() {}

fn main() {}
