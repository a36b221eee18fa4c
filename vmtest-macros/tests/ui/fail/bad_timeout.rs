use vmtest_harness::vmtest;

#[vmtest(timeout = "0s")]
fn zero() {}

#[vmtest(timeout = "1min")]
fn unknown_unit() {}

#[vmtest(timeout = 60)]
fn not_a_string() {}

fn main() {}
