use vmtest_harness::vmtest;

#[vmtest]
#[test]
fn registered_twice() {}

fn main() {}
