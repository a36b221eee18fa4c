use vmtest_harness::vmtest;

#[vmtest(kernel = "a", kernels = ["b", "c"])]
fn both() {}

fn main() {}
