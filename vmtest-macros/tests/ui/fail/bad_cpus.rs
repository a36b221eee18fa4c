use vmtest_harness::vmtest;

#[vmtest(cpus = 0)]
fn zero() {}

#[vmtest(cpus = 256)]
fn too_many() {}

#[vmtest(cpus = "2")]
fn string() {}

fn main() {}
