//! Values passed through `macro_rules!` arrive in invisible groups; they are
//! still literals. Attributes before `#[vmtest]` are read too.

use vmtest_harness::__private::{inventory, ShouldPanic, VmTest};
use vmtest_harness::vmtest;

macro_rules! kernel_test {
    ($name:ident, $kernel:literal, $memory:expr) => {
        #[vmtest(kernel = $kernel, memory = $memory)]
        fn $name() {}
    };
}

kernel_test!(from_macro, "bzImage-6.6", "256M");

#[ignore]
#[should_panic(expected = "x")]
#[vmtest(cpus = 1)]
fn attributes_first() {}

fn main() {
    let tests: Vec<&VmTest> = inventory::iter::<VmTest>.into_iter().collect();
    assert_eq!(tests.len(), 2);
    let test = tests.iter().find(|test| test.name == "from_macro").unwrap();
    assert_eq!(test.kernels, ["bzImage-6.6"]);
    assert_eq!(test.memory_mib, Some(256));
    let test = tests.iter().find(|test| test.name == "attributes_first").unwrap();
    assert!(test.ignore);
    assert_eq!(test.should_panic, ShouldPanic::Expected("x"));
    assert_eq!(test.cpus, Some(1));
}
