//! Disk-image targets: the engine boots the image, which runs
//! qemu-guest-agent itself, and runs the command through the agent.

use vmtest_engine::{Engine, Finished, ImageJob};

use crate::plan::{bash, ImageRun, SHARED_MOUNT};
use crate::ui::{Stage, Ui};

/// Runs an image target (the `index`th), telling `ui` as it goes.
pub fn run(engine: &Engine, run: &ImageRun, index: usize, ui: &Ui) -> Finished {
    let what = format!("booting image {}", run.image.display());
    ui.stage(index, &Stage::Booting { what });
    engine.run_image(ImageJob {
        name: run.name.clone(),
        image: run.image.clone(),
        uefi: run.uefi,
        firmware: run.bios.clone(),
        cpus: run.cpus,
        memory_mib: run.memory_mib,
        qemu_binary: run.qemu_command.clone(),
        qemu_args: run.extra_args.clone(),
        shared: Some((run.shared.clone(), SHARED_MOUNT.into())),
        command: bash(&run.command),
    })
}
