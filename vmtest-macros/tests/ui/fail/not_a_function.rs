use vmtest_harness::vmtest;

#[vmtest]
struct NotATest;

fn main() {}
