use vmtest_harness::vmtest;

const KERNEL: &str = "bzImage";

#[vmtest(kernel = KERNEL)]
fn constant() {}

#[vmtest(kernel = 61)]
fn number() {}

#[vmtest(kernels = ["a", 6])]
fn in_list() {}

#[vmtest(kernels = 6)]
fn list_not_array() {}

#[vmtest(kernel)]
fn no_value() {}

fn main() {}
