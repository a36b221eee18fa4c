use vmtest_harness::vmtest;

#[vmtest(kernel = "bzImage", memroy = "1G")]
fn typo() {}

#[vmtest(qemu::memory = "1G")]
fn path_key() {}

fn main() {}
