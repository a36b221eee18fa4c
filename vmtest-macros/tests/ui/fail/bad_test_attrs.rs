use vmtest_harness::vmtest;

#[vmtest]
#[should_panic(reason = "boom")]
fn unknown_should_panic_key() {}

#[vmtest]
#[ignore]
#[ignore]
fn ignored_twice() {}

fn main() {}
