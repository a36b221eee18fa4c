//! The engine of vmtest: runs jobs (tests, commands) inside QEMU guests
//! booted from chosen Linux kernels, with the host's root shared read-only
//! over 9p, and reports what happens as [`Event`]s.
//!
//! Two front doors share it: the libtest harness (`vmtest-harness`) and the
//! `vmtest` command. Each builds an [`Engine`] with a [`Reporter`] (the only
//! code that prints), runs [`Job`]s, and maps each [`Outcome`] once.
//!
//! ```no_run
//! use std::sync::Arc;
//! use vmtest_engine::{Command, Engine, Event, GuestServer, Job, Reporter, VmShape, Work};
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
//!     vmtest_engine::serve_if_requested(None);
//!     let engine = Engine::new(GuestServer::this_process().unwrap(), Arc::new(Print)).unwrap();
//!     let finished = engine.run(Job {
//!         name: "uname".into(),
//!         shape: VmShape::new("/boot/vmlinuz"),
//!         work: Work::Command(Command {
//!             program: "uname".into(),
//!             args: vec!["-r".into()],
//!             ..Command::default()
//!         }),
//!         timeout: None,
//!         allowed_splats: Vec::new(),
//!     });
//!     println!("{:?}", finished.outcome);
//!     engine.shutdown();
//! }
//! ```
//!
//! Layers: [`contract`] (what host and guest share), the guest side
//! ([`serve_if_requested`] and the init in `guest/init.rs`), and the host
//! side (boot media, QEMU, VMs, the pool, the engine).

mod accel;
mod boot;
mod cache;
mod cancel;
#[doc(hidden)]
pub mod contract;
mod engine;
mod error;
mod events;
mod guest;
mod image;
mod lease;
mod outcome;
mod pool;
mod private;
mod qemu;
mod run_dir;
mod settings;
mod shape;
mod snapshot;
mod splat;
mod supply;
mod vm;

pub use accel::{Accel, Choice};
pub use boot::bzimage::{kernel_version as kernel_release, ImageError};
pub use boot::PrepareError;
pub use cancel::cancel;
pub use contract::messages::{JobId, Stream, Verdict, WindowSize};
pub use contract::SHARED_DIR_VAR;
pub use engine::{Command, Engine, GuestServer, Input, Job, Work};
pub use error::{chain, SetupError};
pub use events::{Event, Reporter, VmId};
pub use guest::{serve_if_requested, TestRunner};
pub use image::ImageJob;
pub use outcome::{signal_name, Captured, Finished, Outcome};
pub use private::PrivateDirError;
pub use qemu::process::SpawnError;
pub use settings::{Settings, SettingsError};
pub use shape::{Mount, VmShape, DEFAULT_CPUS, DEFAULT_MEMORY_MIB};
pub use splat::Splat;
pub use supply::{
    deb::DebError, fetch::FetchError, is_url, url_file_name, user_cache_dir, Supply, SupplyError,
};
pub use vm::{BootError, DeathCause, Details, VmDeath};
