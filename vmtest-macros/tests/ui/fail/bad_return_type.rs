use vmtest_harness::vmtest;

#[vmtest]
fn returns_a_number() -> u32 {
    1
}

fn main() {}
