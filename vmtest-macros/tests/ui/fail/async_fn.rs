use vmtest_harness::vmtest;

#[vmtest]
async fn asynchronous() {}

fn main() {}
