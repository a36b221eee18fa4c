//! What a test needs of its VM. Tests with equal shapes share one VM.

use std::path::{Path, PathBuf};

use crate::plan::PlannedTest;

/// Guest memory when a test does not say.
pub(crate) const DEFAULT_MEMORY_MIB: u32 = 512;
/// Guest vCPUs when a test does not say. One: under TCG all vCPUs share one
/// host thread anyway (see `Accel::qemu_accel`), and a second one slows the
/// boot of some kernels (Debian 6.1 falls back from the TSC to the HPET
/// clocksource, 0.3-0.45 s). Tests that need more ask with `cpus`.
pub(crate) const DEFAULT_CPUS: u32 = 1;

/// Everything that makes two VMs different.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct VmShape {
    /// The kernel image, absolute and with symlinks resolved.
    pub kernel: PathBuf,
    pub modules: Option<PathBuf>,
    pub memory_mib: u32,
    pub cpus: u32,
    pub kernel_args: String,
}

/// Why a test's VM cannot be described.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ShapeError {
    #[error("no kernel given: add `kernel = \"...\"` to #[vmtest] or set VMTEST_KERNEL")]
    NoKernel,
    #[error("{what} {written:?} uses ${{{var}}}, which is not set")]
    UnsetVariable {
        what: &'static str,
        written: String,
        var: String,
    },
    #[error("{what} {written:?} has an unterminated ${{")]
    Unterminated { what: &'static str, written: String },
    #[error("kernel image {path} does not exist (from {written:?}); run scripts/setup.sh or fix the path")]
    MissingKernel { path: PathBuf, written: String },
}

impl VmShape {
    /// The shape of `planned`'s VM, reading `VMTEST_KERNEL` and `${VAR}`s
    /// from `env`.
    pub(crate) fn of(
        planned: &PlannedTest,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<VmShape, ShapeError> {
        let test = planned.test;
        let written = match planned.kernel {
            Some(kernel) => kernel.to_string(),
            None => env("VMTEST_KERNEL")
                .filter(|kernel| !kernel.is_empty())
                .ok_or(ShapeError::NoKernel)?,
        };
        let base = Path::new(test.manifest_dir);
        let kernel = base.join(expand("kernel image", &written, &env)?);
        let kernel = kernel
            .canonicalize()
            .map_err(|_| ShapeError::MissingKernel {
                path: kernel.clone(),
                written: written.clone(),
            })?;
        let modules = test
            .modules
            .map(|modules| expand("modules directory", modules, &env).map(|dir| base.join(dir)))
            .transpose()?;
        Ok(VmShape {
            kernel,
            modules,
            memory_mib: test.memory_mib.unwrap_or(DEFAULT_MEMORY_MIB),
            cpus: test.cpus.unwrap_or(DEFAULT_CPUS),
            kernel_args: test.kernel_args.to_string(),
        })
    }
}

/// Replaces each `${VAR}` in `written` with its value.
pub(crate) fn expand(
    what: &'static str,
    written: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<String, ShapeError> {
    let mut expanded = String::new();
    let mut rest = written;
    while let Some(start) = rest.find("${") {
        expanded.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| ShapeError::Unterminated {
            what,
            written: written.to_string(),
        })?;
        let var = &after[..end];
        let value = env(var).ok_or_else(|| ShapeError::UnsetVariable {
            what,
            written: written.to_string(),
            var: var.to_string(),
        })?;
        expanded.push_str(&value);
        rest = &after[end + 1..];
    }
    expanded.push_str(rest);
    Ok(expanded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::plan;
    use crate::registry::VmTest;

    fn env(var: &str) -> Option<String> {
        match var {
            "KERNELS" => Some("/opt/kernels".into()),
            _ => None,
        }
    }

    #[test]
    fn variables_expand_and_unset_ones_are_named() {
        assert_eq!(
            expand("kernel image", "${KERNELS}/vmlinuz-6.1", &env).unwrap(),
            "/opt/kernels/vmlinuz-6.1"
        );
        assert_eq!(
            expand("kernel image", "${NOPE}/k", &env)
                .unwrap_err()
                .to_string(),
            "kernel image \"${NOPE}/k\" uses ${NOPE}, which is not set"
        );
        assert!(matches!(
            expand("kernel image", "${KERNELS", &env),
            Err(ShapeError::Unterminated { .. })
        ));
    }

    fn planned(kernels: &'static [&'static str], manifest_dir: &'static str) -> PlannedTest {
        let test: &'static VmTest = Box::leak(Box::new(VmTest {
            manifest_dir,
            memory_mib: Some(1024),
            kernel_args: "nokaslr",
            ..VmTest::sample("kernels", kernels)
        }));

        plan(&[test], env).remove(0)
    }

    #[test]
    fn relative_kernels_resolve_against_the_crate_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bzImage"), b"").unwrap();
        let manifest_dir: &'static str = Box::leak(dir.path().to_str().unwrap().to_owned().into());
        let shape = VmShape::of(&planned(&["bzImage"], manifest_dir), env).unwrap();
        assert_eq!(
            shape.kernel,
            dir.path().canonicalize().unwrap().join("bzImage")
        );
        assert_eq!((shape.memory_mib, shape.cpus), (1024, DEFAULT_CPUS));
        assert_eq!(shape.kernel_args, "nokaslr");

        let error = VmShape::of(&planned(&["missing"], manifest_dir), env).unwrap_err();
        assert!(
            error.to_string().contains("/missing does not exist"),
            "{error}"
        );
    }

    #[test]
    fn without_a_kernel_vmtest_kernel_is_used_or_the_test_says_what_to_do() {
        let planned = planned(&[], "/");
        assert_eq!(VmShape::of(&planned, env), Err(ShapeError::NoKernel));
        let shape = VmShape::of(&planned, |var| (var == "VMTEST_KERNEL").then(|| "/".into()));
        assert_eq!(shape.unwrap().kernel, PathBuf::from("/"));
    }
}
