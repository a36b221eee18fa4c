//! From a planned test to the shape of its VM: the kernel path as written
//! (`${VAR}` expanded, relative to the crate), or `VMTEST_KERNEL`.

use std::path::{Path, PathBuf};

use vmtest_engine::VmShape;

use crate::plan::PlannedTest;
use crate::vars::{expand, VarError};

/// Why a test's VM cannot be described.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ShapeError {
    #[error("no kernel given: add `kernel = \"...\"` to #[vmtest] or set VMTEST_KERNEL")]
    NoKernel,
    #[error(transparent)]
    Var(#[from] VarError),
    #[error("kernel image {path} does not exist (from {written:?}); run scripts/setup.sh or fix the path")]
    MissingKernel { path: PathBuf, written: String },
}

/// The shape of `planned`'s VM, reading `VMTEST_KERNEL` and `${VAR}`s from
/// `env`.
pub(crate) fn shape_of(
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
    // Canonical, so that tests naming the same kernel differently share VMs.
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
    let mut shape = VmShape::new(kernel);
    shape.modules = modules;
    shape.memory_mib = test.memory_mib.unwrap_or(shape.memory_mib);
    shape.cpus = test.cpus.unwrap_or(shape.cpus);
    shape.kernel_args = test.kernel_args.to_string();
    Ok(shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::plan;
    use crate::registry::VmTest;

    fn env(var: &str) -> Option<String> {
        (var == "KERNELS").then(|| "/opt/kernels".into())
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
        let shape = shape_of(&planned(&["bzImage"], manifest_dir), env).unwrap();
        assert_eq!(
            shape.kernel,
            dir.path().canonicalize().unwrap().join("bzImage")
        );
        assert_eq!((shape.memory_mib, shape.cpus), (1024, 1));
        assert_eq!(shape.kernel_args, "nokaslr");

        let error = shape_of(&planned(&["missing"], manifest_dir), env).unwrap_err();
        assert!(
            error.to_string().contains("/missing does not exist"),
            "{error}"
        );
    }

    #[test]
    fn without_a_kernel_vmtest_kernel_is_used_or_the_test_says_what_to_do() {
        let planned = planned(&[], "/");
        assert_eq!(shape_of(&planned, env), Err(ShapeError::NoKernel));
        let shape = shape_of(&planned, |var| (var == "VMTEST_KERNEL").then(|| "/".into()));
        assert_eq!(shape.unwrap().kernel, PathBuf::from("/"));
    }
}
