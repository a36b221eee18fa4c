//! Disk-image targets: the engine boots the image, which runs
//! qemu-guest-agent itself, and runs the command through the agent.

use vmtest_engine::{Engine, Finished, ImageJob};

use crate::ui::{Stage, Ui};

/// Runs an image target (the `index`th), telling `ui` as it goes.
pub fn run(engine: &Engine, job: &ImageJob, index: usize, ui: &Ui) -> Finished {
    let what = format!("booting image {}", job.image.display());
    ui.stage(index, &Stage::Booting { what });
    engine.run_image(job.clone())
}
