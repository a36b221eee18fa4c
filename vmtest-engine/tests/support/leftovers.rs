//! Checking that a run left nothing behind. Shared by the test crates
//! (`#[path]`).

use std::path::Path;
use std::process::Command;

/// Nothing of a run may outlive it: no file in its `TMPDIR`, no process
/// (QEMU) using one.
pub fn assert_nothing_left_in(tmp: &Path) {
    let left: Vec<_> = std::fs::read_dir(tmp).unwrap().collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    let processes = Command::new("pgrep")
        .args(["-af", tmp.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        processes.stdout.is_empty(),
        "processes still running: {}",
        String::from_utf8_lossy(&processes.stdout)
    );
}
