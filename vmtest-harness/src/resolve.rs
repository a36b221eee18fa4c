//! From a trial test to the shape of its VM: the kernel as written
//! (`${VAR}` expanded; a path relative to the crate, or a URL, fetched), or
//! `VMTEST_KERNEL`; and whether the kernel's version is one the test runs on.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vmtest_engine::{image_kernel_version, is_url, Reporter, Supply, SupplyError, VmShape};

use crate::trials::{Kernel, KernelTrial};
use crate::vars::{expand, VarError};
use crate::version;

/// Fetches the kernel a URL names (see `vmtest_engine::Supply`).
pub(crate) type Fetch<'a> = dyn Fn(&str) -> Result<PathBuf, Arc<SupplyError>> + 'a;

/// Why a test's VM cannot be described.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ShapeError {
    #[error("no kernel given: add `kernel = \"...\"` to #[vmtest] or set VMTEST_KERNEL")]
    NoKernel,
    #[error(transparent)]
    Var(#[from] VarError),
    #[error("{0}")]
    Unreadable(String),
    #[error("kernel image {path} does not exist (from {written:?}); run scripts/setup.sh or fix the path")]
    MissingKernel { path: PathBuf, written: String },
    #[error("cannot fetch kernel {url}: {}", vmtest_engine::chain(.error.as_ref()))]
    Fetch {
        url: String,
        error: Arc<SupplyError>,
    },
}

/// A trial test, its VM's shape, and why it is ignored on its kernel.
pub(crate) struct Resolved {
    pub trial: KernelTrial,
    pub shape: Result<VmShape, ShapeError>,
    pub gate: Option<String>,
}

/// The shape of every trial test's VM, fetching kernels named by URL.
pub(crate) fn resolve_all(trial: Vec<KernelTrial>, reporter: &dyn Reporter) -> Vec<Resolved> {
    let env = |var: &str| std::env::var(var).ok();
    let supply = Supply::from_env().map_err(Arc::new);
    // Once per URL, failures too: many tests may name one kernel.
    let fetched: RefCell<HashMap<String, Result<PathBuf, Arc<SupplyError>>>> = RefCell::default();
    let fetch = |url: &str| -> Result<PathBuf, Arc<SupplyError>> {
        if let Some(known) = fetched.borrow().get(url) {
            return known.clone();
        }
        let result = supply.as_ref().map_err(Arc::clone).and_then(|supply| {
            supply
                .kernel(url, &|event| reporter.report(event))
                .map_err(Arc::new)
        });
        fetched.borrow_mut().insert(url.to_string(), result.clone());
        result
    };
    trial
        .into_iter()
        .map(|trial| {
            let shape = shape_of(&trial, env, &fetch);
            let gate = shape.as_ref().ok().and_then(|shape| gated(&trial, shape));
            Resolved { trial, shape, gate }
        })
        .collect()
}

/// The shape of `trial`'s VM, reading `VMTEST_KERNEL` and `${VAR}`s from
/// `env`, fetching URLs with `fetch`.
pub(crate) fn shape_of(
    trial: &KernelTrial,
    env: impl Fn(&str) -> Option<String>,
    fetch: &Fetch,
) -> Result<VmShape, ShapeError> {
    let test = trial.test;
    let written = match &trial.kernel {
        Kernel::Written(kernel) => kernel.clone(),
        Kernel::FromEnv => env("VMTEST_KERNEL")
            .filter(|kernel| !kernel.is_empty())
            .ok_or(ShapeError::NoKernel)?,
        Kernel::Unreadable(reason) => return Err(ShapeError::Unreadable(reason.clone())),
    };
    let base = Path::new(test.manifest_dir);
    let expanded = expand("kernel image", &written, &env)?;
    let kernel = if is_url(&expanded) {
        fetch(&expanded).map_err(|error| ShapeError::Fetch {
            url: expanded.clone(),
            error,
        })?
    } else {
        let kernel = base.join(&expanded);
        // Canonical, so that tests naming the same kernel differently share VMs.
        kernel
            .canonicalize()
            .map_err(|_| ShapeError::MissingKernel {
                path: kernel.clone(),
                written: written.clone(),
            })?
    };
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

/// Why `trial` does not run on its kernel (`min_kernel`, `max_kernel`),
/// read from the image without booting it; `None` if it runs.
pub(crate) fn gated(trial: &KernelTrial, shape: &VmShape) -> Option<String> {
    let test = trial.test;
    if test.min_kernel.is_none() && test.max_kernel.is_none() {
        return None;
    }
    let release = image_kernel_version(&shape.kernel).ok()?;
    version::outside(&release, test.min_kernel, test.max_kernel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::VmTest;
    use crate::trials::per_kernel;

    fn env(var: &str) -> Option<String> {
        (var == "KERNELS").then(|| "/opt/kernels".into())
    }

    fn no_fetch(url: &str) -> Result<PathBuf, Arc<SupplyError>> {
        panic!("no URL here: {url}")
    }

    fn trial(kernels: &'static [&'static str], manifest_dir: &'static str) -> KernelTrial {
        let test: &'static VmTest = Box::leak(Box::new(VmTest {
            manifest_dir,
            memory_mib: Some(1024),
            kernel_args: "nokaslr",
            ..VmTest::sample("kernels", kernels)
        }));
        per_kernel(&[test], env).remove(0)
    }

    #[test]
    fn relative_kernels_resolve_against_the_crate_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bzImage"), b"").unwrap();
        let manifest_dir: &'static str = Box::leak(dir.path().to_str().unwrap().to_owned().into());
        let shape = shape_of(&trial(&["bzImage"], manifest_dir), env, &no_fetch).unwrap();
        assert_eq!(
            shape.kernel,
            dir.path().canonicalize().unwrap().join("bzImage")
        );
        assert_eq!((shape.memory_mib, shape.cpus), (1024, 1));
        assert_eq!(shape.kernel_args, "nokaslr");

        let error = shape_of(&trial(&["missing"], manifest_dir), env, &no_fetch).unwrap_err();
        assert!(
            error.to_string().contains("/missing does not exist"),
            "{error}"
        );
    }

    #[test]
    fn urls_are_fetched() {
        let fetched = |url: &str| {
            assert_eq!(url, "https://h/vmlinuz");
            Ok(PathBuf::from("/cache/vmlinuz"))
        };
        let shape = shape_of(&trial(&["https://h/vmlinuz"], "/"), env, &fetched).unwrap();
        assert_eq!(shape.kernel, PathBuf::from("/cache/vmlinuz"));
    }

    #[test]
    fn without_a_kernel_vmtest_kernel_is_used_or_the_test_says_what_to_do() {
        let trial = trial(&[], "/");
        assert!(matches!(
            shape_of(&trial, env, &no_fetch),
            Err(ShapeError::NoKernel)
        ));
        let shape = shape_of(
            &trial,
            |var| (var == "VMTEST_KERNEL").then(|| "/".into()),
            &no_fetch,
        );
        assert_eq!(shape.unwrap().kernel, PathBuf::from("/"));
    }
}
