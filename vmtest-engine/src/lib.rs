//! The engine of vmtest: runs jobs (tests, programs) inside QEMU guests
//! booted from chosen Linux kernels, with the host's root shared read-only
//! over 9p, and reports what happens as [`Event`]s.
//!
//! Two front doors share it: the libtest harness (`vmtest-harness`) and the
//! `vmtest` command. Each builds an [`Engine`] with a [`Reporter`] (the only
//! code that prints), runs [`Job`]s, and maps each [`Outcome`] once. The
//! engine never prints, never installs a signal handler and never exits the
//! process: a front door that is told to stop calls [`cancel`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use vmtest_engine::{Engine, Event, GuestServer, Job, Program, Reporter, VmShape, Work};
//!
//! struct Print;
//! impl Reporter for Print {
//!     fn report(&self, event: &Event) {
//!         if let Event::Output { data, .. } = event {
//!             print!("{}", String::from_utf8_lossy(data));
//!         }
//!     }
//! }
//!
//! fn main() {
//!     // The guest runs this very binary as its test server.
//!     vmtest_guest::serve_if_requested(None);
//!     let engine = Engine::new(GuestServer::this_process().unwrap(), Arc::new(Print)).unwrap();
//!     let finished = engine.run(Job {
//!         name: "uname".into(),
//!         shape: VmShape::new("/boot/vmlinuz"),
//!         work: Work::Program(Program {
//!             program: "uname".into(),
//!             args: vec!["-r".into()],
//!             ..Program::default()
//!         }),
//!         timeout: None,
//!         allowed_splats: Vec::new(),
//!     });
//!     println!("{:?}", finished.outcome);
//!     engine.shutdown();
//! }
//! ```
//!
//! # Layers
//!
//! Each layer imports only those below it; `qemu` and `media` know nothing
//! of each other. `scripts/check-layers.sh` checks in CI that no modules
//! import each other in a loop, within a layer or between layers; the
//! crates below the engine are cargo's to keep in order.
//!
//! ```text
//!  front doors      vmtest-harness (libtest)     vmtest-cli (the command)
//!                        └─ vmtest-frontdoor (signals, notes) ─┘
//!  ─────────────────────────────────────────────────────────────────────
//!  run              the Engine, the pool of VMs by shape, disk-image jobs,
//!                   SetupError                                 run/
//!  vm               one VM: spec, boot and restore, the guest's link,
//!                   the reader thread, jobs in it, layout      vm/
//!  snapshot         saved guests, named by what they depend on snapshot/
//!  media            kernel images, modules, initramfs, downloads media/
//!  qemu             command line, process, QMP, guest agent    qemu/
//!  host             settings, private dirs, caches, leases,
//!                   cancellation                               host/
//!  model            jobs, shapes, outcomes, events, deaths     model/
//!  ─────────────────────────────────────────────────────────────────────
//!  vmtest-guest     the guest init and test server (what runs in the VM)
//!  vmtest-contract  boot parameters, control protocol, units
//! ```

mod host;
mod media;
mod model;
mod qemu;
mod run;
mod snapshot;
mod vm;

pub use host::cancel::cancel;
pub use host::private::PrivateDirError;
pub use host::settings::{user_cache_dir, Settings, SettingsError};
pub use media::kernel_image::{kernel_version as image_kernel_version, KernelImageError};
pub use media::prepare::PrepareError;
pub use media::supply::{
    deb::DebError, fetch::FetchError, is_url, url_file_name, Supply, SupplyError,
};
pub use model::accel::{Accel, AccelChoice};
pub use model::arch::Arch;
pub use model::death::{DeathCause, VmDeath, VmLogs};
pub use model::events::{Event, Reporter, VmId};
pub use model::job::{GuestServer, Input, Job, Program, Work};
pub use model::outcome::{chain, signal_name, Captured, Finished, Outcome, SetupCause};
pub use model::shape::{Mount, VmShape, DEFAULT_CPUS, DEFAULT_MEMORY_MIB};
pub use model::splat::{Splat, SplatPatternError};
pub use qemu::process::SpawnError;
pub use run::engine::Engine;
pub use run::error::{DiskImageError, SetupError};
pub use run::image::ImageJob;
pub use vm::error::{BootError, JobRefused};
pub use vmtest_contract::messages::{JobId, Stream, Verdict, WindowSize};
pub use vmtest_contract::SHARED_DIR_VAR;
