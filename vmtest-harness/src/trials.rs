//! From registered tests to libtest trials: one per test and
//! kernel, with a kernel suffix when a test runs on several.

use std::path::Path;

use vmtest_engine::{is_url, url_file_name};

use crate::registry::VmTest;
use crate::vars::expand;

/// One test on one kernel.
#[derive(Debug, Clone)]
pub(crate) struct KernelTrial {
    /// The name libtest shows and filters on.
    pub name: String,
    pub test: &'static VmTest,
    pub kernel: Kernel,
}

/// Which kernel a test on one kernel boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// A path (relative to the crate) or a URL, as written; `${VAR}`s in it
    /// are expanded when the test runs.
    Written(String),
    /// The one in `VMTEST_KERNEL`.
    FromEnv,
    /// The test's kernel list cannot be read: why.
    Unreadable(String),
}

/// Every test on every kernel it names; `env` expands `${VAR}`s in kernel
/// paths for the labels, and in kernel lists.
pub(crate) fn per_kernel(
    tests: &[&'static VmTest],
    env: impl Fn(&str) -> Option<String>,
) -> Vec<KernelTrial> {
    let mut trial = Vec::new();
    for &test in tests {
        let path = test.path();
        let written: Vec<String> = match (test.kernel_list, test.kernels) {
            (Some(list), _) => match expand_list(list, Path::new(test.manifest_dir), &env) {
                Ok(kernels) => kernels,
                Err(reason) => {
                    trial.push(KernelTrial {
                        name: path,
                        test,
                        kernel: Kernel::Unreadable(reason),
                    });
                    continue;
                }
            },
            (None, []) => {
                trial.push(KernelTrial {
                    name: path,
                    test,
                    kernel: Kernel::FromEnv,
                });
                continue;
            }
            (None, [kernel]) => {
                trial.push(KernelTrial {
                    name: path,
                    test,
                    kernel: Kernel::Written(kernel.to_string()),
                });
                continue;
            }
            (None, kernels) => kernels.iter().map(|kernel| kernel.to_string()).collect(),
        };
        for (kernel, label) in written.iter().zip(kernel_labels(&written, &env)) {
            trial.push(KernelTrial {
                name: format!("{path}[{label}]"),
                test,
                kernel: Kernel::Written(kernel.clone()),
            });
        }
    }
    trial
}

/// The kernels of a list such as `"${VMTEST_KERNELS}"`: paths or URLs,
/// separated by spaces, commas or newlines; a directory stands for the
/// kernel images in it (`vmlinuz-*`, `bzImage*`).
fn expand_list(
    list: &str,
    base: &Path,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, String> {
    let expanded = expand("kernels", list, env).map_err(|error| error.to_string())?;
    let mut kernels = Vec::new();
    for entry in expanded
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|entry| !entry.is_empty())
    {
        let dir = base.join(entry);
        if !is_url(entry) && dir.is_dir() {
            let mut images: Vec<String> = std::fs::read_dir(&dir)
                .map_err(|error| format!("cannot list kernels in {}: {error}", dir.display()))?
                .flatten()
                .filter(|image| {
                    let name = image.file_name().to_string_lossy().into_owned();
                    (name.starts_with("vmlinuz-") || name.starts_with("bzImage"))
                        && image.path().is_file()
                })
                .map(|image| image.path().to_string_lossy().into_owned())
                .collect();
            if images.is_empty() {
                return Err(format!(
                    "kernel directory {} holds no vmlinuz-* or bzImage",
                    dir.display()
                ));
            }
            images.sort();
            kernels.extend(images);
        } else {
            kernels.push(entry.to_string());
        }
    }
    if kernels.is_empty() {
        return Err(format!("kernels {list:?} names no kernel"));
    }
    Ok(kernels)
}

/// Short labels telling a test's kernels apart: the file names (after
/// `${VAR}` expansion; for a URL, its last part), or the paths as written
/// where two file names are the same.
fn kernel_labels(kernels: &[String], env: &impl Fn(&str) -> Option<String>) -> Vec<String> {
    let file_name = |kernel: &str| {
        let expanded = expand("kernel image", kernel, env).unwrap_or_else(|_| kernel.to_string());
        if is_url(&expanded) {
            return url_file_name(&expanded);
        }
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
        kernels.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(module_path: &'static str, kernels: &'static [&'static str]) -> &'static VmTest {
        Box::leak(Box::new(VmTest::sample(module_path, kernels)))
    }

    fn names(tests: &[&'static VmTest], env: impl Fn(&str) -> Option<String>) -> Vec<String> {
        per_kernel(tests, env)
            .into_iter()
            .map(|trial| trial.name)
            .collect()
    }

    fn env(var: &str) -> Option<String> {
        (var == "K").then(|| "/kernels".to_string())
    }

    #[test]
    fn names_are_paths_inside_the_crate() {
        assert_eq!(names(&[test("kernels", &[])], env), ["probe"]);
        assert_eq!(
            names(&[test("kernels::bpf::maps", &["k"])], env),
            ["bpf::maps::probe"]
        );
    }

    #[test]
    fn several_kernels_give_one_test_each_with_a_suffix() {
        assert_eq!(
            names(
                &[test(
                    "kernels",
                    &["${K}/vmlinuz-6.1", "https://h/p/vmlinuz-6.12#sha256=ab"]
                )],
                env
            ),
            ["probe[vmlinuz-6.1]", "probe[vmlinuz-6.12]"]
        );
        assert_eq!(
            names(&[test("kernels", &["${K}", "${UNSET}"])], env),
            ["probe[kernels]", "probe[${UNSET}]"]
        );
    }

    #[test]
    fn same_file_names_fall_back_to_the_written_paths() {
        assert_eq!(
            names(&[test("kernels", &["a/bzImage", "b/bzImage"])], env),
            ["probe[a/bzImage]", "probe[b/bzImage]"]
        );
    }

    #[test]
    fn a_kernel_list_comes_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["vmlinuz-6.1", "vmlinuz-6.12", "config-6.1"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let listed = |value: String| {
            let test: &'static VmTest = Box::leak(Box::new(VmTest {
                kernel_list: Some("${KERNELS}"),
                ..VmTest::sample("kernels", &[])
            }));
            per_kernel(&[test], move |var| {
                (var == "KERNELS").then(|| value.clone())
            })
        };
        let trial = listed(format!("{} , https://h/bzImage-6.4", dir.path().display()));
        let names: Vec<&str> = trial.iter().map(|trial| trial.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "probe[vmlinuz-6.1]",
                "probe[vmlinuz-6.12]",
                "probe[bzImage-6.4]"
            ]
        );
        assert_eq!(
            trial[2].kernel,
            Kernel::Written("https://h/bzImage-6.4".into())
        );
        let trial = listed(" , ".into());
        assert!(
            matches!(&trial[0].kernel, Kernel::Unreadable(reason) if reason.contains("names no kernel"))
        );
        let trial = listed(String::new());
        assert!(
            matches!(&trial[0].kernel, Kernel::Unreadable(reason) if reason.contains("is empty"))
        );
        let unset = per_kernel(
            &[Box::leak(Box::new(VmTest {
                kernel_list: Some("${NOPE}"),
                ..VmTest::sample("k", &[])
            }))],
            env,
        );
        assert!(matches!(&unset[0].kernel, Kernel::Unreadable(reason) if reason.contains("NOPE")));
    }
}
