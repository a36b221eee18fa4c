//! Every key and test attribute, checked in the registry. Nothing boots.

use vmtest_harness::__private::{inventory, ShouldPanic, VmTest};
use vmtest_harness::vmtest;

#[vmtest(
    kernel = "kernels/bzImage-6.1",
    modules = "/path/to/lib/modules/6.1.0",
    memory = "1G",
    cpus = 2,
    kernel_args = "nokaslr",
    timeout = "60s",
    allow_splats = ["lkdtm_WARNING", "^BUG: KASAN"],
    min_kernel = "6.4",
    max_kernel = "6.11",
)]
#[should_panic(expected = "boom")]
fn every_key() {
    panic!("boom")
}

#[vmtest(kernels = ["${CI_KERNELS}/vmlinuz-6.1", "/abs/vmlinuz-6.12"], memory = "1536MiB", timeout = "500ms")]
#[should_panic = "bang"]
fn on_each_kernel() {}

#[vmtest(kernels = "${CI_KERNELS}")]
fn from_the_environment() {}

#[vmtest]
#[ignore = "reason"]
fn defaults() -> Result<(), std::io::Error> {
    Err(std::io::Error::other("nope"))
}

mod nested {
    use vmtest_harness::vmtest;

    #[vmtest(memory = "2GiB", timeout = "2m", cpus = 64)]
    #[ignore]
    #[should_panic]
    #[allow(dead_code)]
    pub(crate) fn in_module() -> Result<(), String> {
        Ok(())
    }
}

#[vmtest(memory = "512M", timeout = "1h")]
fn r#type() {}

fn find(name: &str) -> &'static VmTest {
    let mut found = inventory::iter::<VmTest>.into_iter().filter(|test| test.name == name);
    let test = found.next().unwrap_or_else(|| panic!("{name} is not registered"));
    assert!(found.next().is_none(), "{name} is registered twice");
    test
}

fn main() {
    assert_eq!(inventory::iter::<VmTest>.into_iter().count(), 6);
    let test = find("from_the_environment");
    assert_eq!(test.kernel_list, Some("${CI_KERNELS}"));
    assert!(test.kernels.is_empty());

    let test = find("every_key");
    assert_eq!(test.module_path, module_path!());
    assert!(std::path::Path::new(test.manifest_dir).is_absolute());
    assert_eq!(test.kernels, ["kernels/bzImage-6.1"]);
    assert_eq!(test.modules, Some("/path/to/lib/modules/6.1.0"));
    assert_eq!(test.memory_mib, Some(1024));
    assert_eq!(test.cpus, Some(2));
    assert_eq!(test.kernel_args, "nokaslr");
    assert_eq!(test.timeout_ms, Some(60_000));
    assert_eq!(test.allowed_splats, ["lkdtm_WARNING", "^BUG: KASAN"]);
    assert_eq!((test.min_kernel, test.max_kernel), (Some("6.4"), Some("6.11")));
    assert_eq!(test.kernel_list, None);
    assert!(!test.ignore);
    assert_eq!(test.should_panic, ShouldPanic::Expected("boom"));
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {})); // the panic is expected: keep the output quiet
    let panic = std::panic::catch_unwind(test.run).unwrap_err();
    std::panic::set_hook(hook);
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"boom"));

    let test = find("on_each_kernel");
    assert_eq!(test.kernels, ["${CI_KERNELS}/vmlinuz-6.1", "/abs/vmlinuz-6.12"]);
    assert_eq!(test.modules, None);
    assert_eq!(test.memory_mib, Some(1536));
    assert_eq!(test.cpus, None);
    assert_eq!(test.kernel_args, "");
    assert_eq!(test.timeout_ms, Some(500));
    assert_eq!(test.should_panic, ShouldPanic::Expected("bang"));
    assert_eq!((test.run)(), Ok(()));

    let test = find("defaults");
    assert!(test.kernels.is_empty());
    assert_eq!(test.modules, None);
    assert_eq!(test.memory_mib, None);
    assert_eq!(test.cpus, None);
    assert_eq!(test.kernel_args, "");
    assert_eq!(test.timeout_ms, None);
    assert!(test.allowed_splats.is_empty());
    assert!(test.ignore);
    assert_eq!(test.should_panic, ShouldPanic::No);
    assert_eq!((test.run)(), Err(r#"Error: Custom { kind: Other, error: "nope" }"#.to_string()));

    let test = find("in_module");
    assert_eq!(test.module_path, format!("{}::nested", module_path!()));
    assert_eq!(test.path(), "nested::in_module");
    assert_eq!(test.memory_mib, Some(2048));
    assert_eq!(test.timeout_ms, Some(120_000));
    assert_eq!(test.cpus, Some(64));
    assert!(test.ignore);
    assert_eq!(test.should_panic, ShouldPanic::Yes);
    assert_eq!((test.run)(), Ok(()));

    let test = find("type");
    assert_eq!(test.memory_mib, Some(512));
    assert_eq!(test.timeout_ms, Some(3_600_000));
    assert_eq!((test.run)(), Ok(()));
}
