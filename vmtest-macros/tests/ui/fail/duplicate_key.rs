use vmtest_harness::vmtest;

#[vmtest(kernel = "a", cpus = 2, cpus = 4)]
fn twice() {}

#[vmtest(kernel = "a", kernel = "b")]
fn two_kernels() {}

fn main() {}
