use vmtest_harness::vmtest;

#[vmtest(kernels = [])]
fn empty() {}

#[vmtest(kernels = ["a", "b", "a"])]
fn duplicate() {}

#[vmtest(kernel = "")]
fn empty_path() {}

fn main() {}
