//! From registered tests to libtest test names: one entry per test and
//! kernel, with a kernel suffix when a test runs on several.

use std::path::Path;

use crate::registry::VmTest;
use crate::vars::expand;

/// One test on one kernel.
#[derive(Debug, Clone)]
pub(crate) struct PlannedTest {
    /// The name libtest shows and filters on.
    pub name: String,
    pub test: &'static VmTest,
    /// The kernel as written in the attribute; `None` means `VMTEST_KERNEL`.
    pub kernel: Option<&'static str>,
}

/// Every test on every kernel it names; `env` expands `${VAR}`s in kernel
/// paths for the labels.
pub(crate) fn plan(
    tests: &[&'static VmTest],
    env: impl Fn(&str) -> Option<String>,
) -> Vec<PlannedTest> {
    let mut planned = Vec::new();
    for &test in tests {
        let path = test.path();
        match test.kernels {
            [] => planned.push(PlannedTest {
                name: path,
                test,
                kernel: None,
            }),
            [kernel] => planned.push(PlannedTest {
                name: path,
                test,
                kernel: Some(kernel),
            }),
            kernels => {
                for (kernel, label) in kernels.iter().zip(kernel_labels(kernels, &env)) {
                    planned.push(PlannedTest {
                        name: format!("{path}[{label}]"),
                        test,
                        kernel: Some(kernel),
                    });
                }
            }
        }
    }
    planned
}

/// Short labels telling a test's kernels apart: the file names (after
/// `${VAR}` expansion), or the paths as written where two file names are the
/// same.
fn kernel_labels(kernels: &[&str], env: &impl Fn(&str) -> Option<String>) -> Vec<String> {
    let file_name = |kernel: &str| {
        let expanded = expand("kernel image", kernel, env).unwrap_or_else(|_| kernel.to_string());
        Path::new(&expanded)
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or(expanded)
    };
    let names: Vec<String> = kernels.iter().map(|kernel| file_name(kernel)).collect();
    let distinct = names
        .iter()
        .enumerate()
        .all(|(index, name)| !names[..index].contains(name));
    if distinct {
        names
    } else {
        kernels.iter().map(|kernel| kernel.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(module_path: &'static str, kernels: &'static [&'static str]) -> &'static VmTest {
        Box::leak(Box::new(VmTest::sample(module_path, kernels)))
    }

    fn names(tests: &[&'static VmTest]) -> Vec<String> {
        let env = |var: &str| (var == "K").then(|| "/kernels".to_string());
        plan(tests, env)
            .into_iter()
            .map(|planned| planned.name)
            .collect()
    }

    #[test]
    fn names_are_paths_inside_the_crate() {
        assert_eq!(names(&[test("kernels", &[])]), ["probe"]);
        assert_eq!(
            names(&[test("kernels::bpf::maps", &["k"])]),
            ["bpf::maps::probe"]
        );
    }

    #[test]
    fn several_kernels_give_one_test_each_with_a_suffix() {
        assert_eq!(
            names(&[test("kernels", &["${K}/vmlinuz-6.1", "/abs/vmlinuz-6.12"])]),
            ["probe[vmlinuz-6.1]", "probe[vmlinuz-6.12]"]
        );
        assert_eq!(
            names(&[test("kernels", &["${K}", "${UNSET}"])]),
            ["probe[kernels]", "probe[${UNSET}]"]
        );
    }

    #[test]
    fn same_file_names_fall_back_to_the_written_paths() {
        assert_eq!(
            names(&[test("kernels", &["a/bzImage", "b/bzImage"])]),
            ["probe[a/bzImage]", "probe[b/bzImage]"]
        );
    }
}
