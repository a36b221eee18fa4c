//! The tests that `#[vmtest]` registers, collected with `inventory`.

use std::fmt::Debug;

/// One `#[vmtest]` function, as the attribute registers it.
///
/// Built by the macro's expansion only; every field is filled from the
/// attribute's arguments, with `None` meaning "the harness's default".
#[derive(Debug)]
pub struct VmTest {
    /// The function's name.
    pub name: &'static str,
    /// `module_path!()` where the function is defined (starts with the crate name).
    pub module_path: &'static str,
    /// `env!("CARGO_MANIFEST_DIR")` of the crate defining the test: relative
    /// kernel paths are resolved against it.
    pub manifest_dir: &'static str,
    /// Kernel images as written (may contain `${VAR}`); empty means
    /// `VMTEST_KERNEL`, unless `kernel_list` is given.
    pub kernels: &'static [&'static str],
    /// `kernels = "${VAR}"`: a list of kernels taken from the environment
    /// when the tests run.
    pub kernel_list: Option<&'static str>,
    /// `min_kernel`: the oldest kernel version the test runs on (`"6.4"`,
    /// `"6.1.90"`); on older ones it is ignored.
    pub min_kernel: Option<&'static str>,
    /// `max_kernel`: the newest (`"6.11"` takes in every 6.11.x).
    pub max_kernel: Option<&'static str>,
    /// An explicit modules directory, as written (may contain `${VAR}`).
    pub modules: Option<&'static str>,
    /// Guest memory in MiB.
    pub memory_mib: Option<u32>,
    /// Guest vCPUs.
    pub cpus: Option<u32>,
    /// Extra kernel command-line arguments.
    pub kernel_args: &'static str,
    /// Per-test timeout in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Regular expressions for kernel splats the test may cause.
    pub allowed_splats: &'static [&'static str],
    /// `#[ignore]` was given.
    pub ignore: bool,
    /// `#[should_panic]`, as given.
    pub should_panic: ShouldPanic,
    /// Calls the test function and turns its return value into a result.
    pub run: fn() -> Result<(), String>,
}

/// What `#[should_panic]` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShouldPanic {
    /// No `#[should_panic]`.
    No,
    /// `#[should_panic]`.
    Yes,
    /// `#[should_panic(expected = "...")]`.
    Expected(&'static str),
}

/// The return types a test function may have, as in libtest: `()` or
/// `Result<(), E: Debug>`.
pub trait TestReturn {
    /// `Err` carries the message libtest would print.
    fn into_result(self) -> Result<(), String>;
}

impl TestReturn for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Debug> TestReturn for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|error| format!("Error: {error:?}"))
    }
}

inventory::collect!(VmTest);

impl VmTest {
    /// The name libtest would give the function: its path inside the crate,
    /// without the crate's name.
    pub fn path(&self) -> String {
        match self.module_path.split_once("::") {
            Some((_crate, rest)) => format!("{rest}::{}", self.name),
            None => self.name.to_string(),
        }
    }

    /// `self.path() == path`, without allocating.
    fn has_path(&self, path: &str) -> bool {
        match self.module_path.split_once("::") {
            Some((_crate, module)) => path
                .strip_prefix(module)
                .and_then(|rest| rest.strip_prefix("::"))
                .is_some_and(|name| name == self.name),
            None => path == self.name,
        }
    }
}

/// The registered test whose [`VmTest::path`] is `path`, found without
/// listing or sorting: the guest side runs once per test, under emulation.
pub fn find(path: &str) -> Option<&'static VmTest> {
    inventory::iter::<VmTest>
        .into_iter()
        .find(|test| test.has_path(path))
}

/// Every registered test, sorted by path so runs and listings are stable
/// (`inventory` guarantees no order).
pub fn all() -> Vec<&'static VmTest> {
    let mut tests: Vec<&'static VmTest> = inventory::iter::<VmTest>.into_iter().collect();
    tests.sort_by_key(|test| test.path());
    tests
}

#[cfg(test)]
impl VmTest {
    /// A test named `probe` in `module_path` on `kernels`, all else default.
    pub(crate) fn sample(module_path: &'static str, kernels: &'static [&'static str]) -> VmTest {
        VmTest {
            name: "probe",
            module_path,
            manifest_dir: "/crate",
            kernels,
            kernel_list: None,
            min_kernel: None,
            max_kernel: None,
            modules: None,
            memory_mib: None,
            cpus: None,
            kernel_args: "",
            timeout_ms: None,
            allowed_splats: &[],
            ignore: false,
            should_panic: ShouldPanic::No,
            run: || Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(module_path: &'static str) -> VmTest {
        VmTest::sample(module_path, &[])
    }

    #[test]
    fn has_path_agrees_with_path() {
        for module_path in ["kernels", "kernels::bpf", "kernels::bpf::maps"] {
            let test = test(module_path);
            assert!(test.has_path(&test.path()), "{module_path}");
            for other in [
                "probe2",
                "bpf::probe",
                "bpf::maps::probe2",
                "maps::probe",
                "",
            ] {
                assert_eq!(
                    test.has_path(other),
                    test.path() == other,
                    "{module_path} {other}"
                );
            }
        }
    }
}
