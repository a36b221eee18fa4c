use vmtest_harness::vmtest;

#[vmtest(kernel = "k", allow_splats = ["WARNING: (unclosed"])]
fn bad_pattern() {}

#[vmtest(kernel = "k", allow_splats = "WARNING")]
fn not_a_list() {}

fn main() {}
