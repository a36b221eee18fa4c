use vmtest_harness::vmtest;

#[vmtest(memory = "32M")]
fn too_small() {}

#[vmtest(memory = "1GB")]
fn decimal_unit() {}

#[vmtest(memory = "1.0001G")]
fn not_whole() {}

#[vmtest(memory = 1024)]
fn not_a_string() {}

fn main() {}
