//! `#[vmtest]`: registers a test that runs inside a QEMU guest booted from a
//! chosen Linux kernel.
//!
//! Use it through `vmtest_harness`, which re-exports it and runs the tests
//! (in a test target with `harness = false` whose `main` calls the harness):
//!
//! ```
//! use vmtest_harness::vmtest;
//!
//! // Relative paths are resolved against the crate's manifest directory;
//! // `${VAR}` is expanded when the test runs.
//! #[vmtest(kernel = "kernels/bzImage-6.1", memory = "1G", cpus = 2)]
//! fn prog_runs() {}
//!
//! // Runs once per kernel.
//! #[vmtest(kernels = ["${CI_KERNELS}/vmlinuz-6.1", "/abs/vmlinuz-6.12"], timeout = "60s")]
//! #[should_panic(expected = "boom")]
//! fn panics() {
//!     panic!("boom")
//! }
//!
//! // No kernel: the one in `VMTEST_KERNEL` when the test runs.
//! #[vmtest]
//! #[ignore = "slow"]
//! fn returns_result() -> Result<(), std::io::Error> {
//!     Ok(())
//! }
//! # fn main() {}
//! ```
//!
//! Keys, all optional:
//!
//! | key           | value                                                     |
//! |---------------|-----------------------------------------------------------|
//! | `kernel`      | path to a kernel image, or an `https://` URL              |
//! | `kernels`     | non-empty array of kernel paths or URLs; the test runs on |
//! |               | each; or a string (`"${VMTEST_KERNELS}"`) read when the   |
//! |               | tests run: kernels separated by spaces or commas, a       |
//! |               | directory standing for the kernel images in it            |
//! | `modules`     | a modules directory such as `/lib/modules/6.1.0`          |
//! | `memory`      | `"512M"`, `"1G"`, `"1536MiB"`, `"2GiB"`: at least 64 MiB  |
//! | `cpus`        | 1 to 64                                                   |
//! | `kernel_args` | extra kernel command-line arguments                       |
//! | `timeout`     | `"500ms"`, `"30s"`, `"2m"`, `"1h"`                        |
//! | `min_kernel`  | `"6.4"`: on older kernels the test is ignored             |
//! | `max_kernel`  | `"6.11"`: on newer kernels (6.12 on) it is ignored        |
//! | `allow_splats`| array of regular expressions: kernel splats (warnings,    |
//! |               | oopses, ...) matching one do not fail the test            |
//!
//! `#[ignore]` and `#[should_panic]` after `#[vmtest]` work as with `#[test]`
//! (do not add `#[test]` itself). The function must be a free function with
//! no parameters, not generic, not `async`, returning `()` or
//! `Result<(), E: Debug>`. The expansion names `::vmtest_harness`, so the
//! crate must depend on it under that name.
#![forbid(unsafe_code)]

use proc_macro::TokenStream;

mod args;
mod expand;

/// Registers a test that runs inside a VM; see the [crate docs](crate).
#[proc_macro_attribute]
pub fn vmtest(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::vmtest(args.into(), item.into()).into()
}
