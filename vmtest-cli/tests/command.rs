//! End to end: the `vmtest` binary, as a user runs it, on the Debian kernels
//! `scripts/setup.sh` fetches, in real QEMU. The attended face and the
//! interactive shell are driven through tmux, a real pseudo-terminal.

#[path = "../../vmtest-engine/tests/support/http.rs"]
mod http;
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// A directory with a `vmtest.toml` and the kernels beside it.
fn config(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::create_dir(dir.path().join("kernels")).unwrap();
    for series in ["6.1", "6.12"] {
        std::os::unix::fs::symlink(
            kernel(series),
            dir.path().join(format!("kernels/vmlinuz-{series}")),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("vmtest.toml"), text).unwrap();
    dir
}

#[test]
fn a_one_liner_runs_in_the_guest_with_its_exit_code() {
    let here = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let k = kernel("6.1");
    let run = vmtest(here.path(), &["-k", k.to_str().unwrap(), "uname", "-r"]);
    assert_eq!(run.code(), Some(0));
    assert!(run.stdout.starts_with("6.1."), "{}", run.stdout);
    // stdout and stderr apart, the working directory and the shared one.
    let run = vmtest(
        here.path(),
        &[
            "-k",
            k.to_str().unwrap(),
            "echo out; echo err >&2; pwd; touch /mnt/vmtest/made-in-guest; exit 3",
        ],
    );
    assert_eq!(run.code(), Some(3));
    assert_eq!(run.stdout, format!("out\n{}\n", here.path().display()));
    assert!(run.stderr.contains("err\n"), "{}", run.stderr);
    assert!(here.path().join("made-in-guest").exists());
    run.assert_nothing_left();
}

#[test]
fn kernels_by_url_are_fetched_for_one_liners_and_configs() {
    let files = tempfile::tempdir().unwrap();
    let debs = kernels_dir().join("debs");
    std::os::unix::fs::symlink(
        debs.join("linux-image-6.1.deb"),
        files.path().join("linux-image-6.1.deb"),
    )
    .unwrap();
    let server = http::Server::start(files.path().to_path_buf());
    let url = format!("{}/files/linux-image-6.1.deb", server.base);
    let cache = tempfile::tempdir().unwrap();
    let xdg = [("XDG_CACHE_HOME", cache.path())];
    // Not in `/`, which the guest would get writable at /mnt/vmtest.
    let here = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let run = vmtest_with(here.path(), &["-k", &url, "uname -r"], &xdg);
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert!(run.stdout.starts_with("6.1."), "{}", run.stdout);
    assert!(
        run.stderr.contains(&format!("vmtest: fetched {url}")),
        "{}",
        run.stderr
    );
    let dir = config(&format!(
        "[[target]]\nname = \"by url\"\nkernel = \"{url}\"\ncommand = \"uname -r\"\n"
    ));
    let run = vmtest_with(dir.path(), &[], &xdg);
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert!(
        !run.stderr.contains("fetched"),
        "the cache serves it: {}",
        run.stderr
    );
    drop(server);
    let missing = config("[[target]]\nname = \"gone\"\nkernel = \"http://127.0.0.1:9/vmlinuz\"\ncommand = \"true\"\n");
    let run = vmtest_with(missing.path(), &[], &xdg);
    assert_eq!(run.code(), Some(69));
    assert!(
        run.stderr
            .contains("target \"gone\": cannot fetch kernel http://127.0.0.1:9/vmlinuz"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_command_killed_by_a_signal_fails_as_shells_report_it() {
    let here = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let run = vmtest(
        here.path(),
        &["-k", kernel("6.12").to_str().unwrap(), "kill -TERM $$"],
    );
    assert_eq!(run.code(), Some(128 + 15));
    assert!(
        run.stderr.contains("killed by signal 15 (SIGTERM)"),
        "{}",
        run.stderr
    );
}

#[test]
fn output_arrives_as_it_is_written() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmtest"))
        .args([
            "-k",
            kernel("6.12").to_str().unwrap(),
            "for i in 1 2 3; do echo $i; sleep 1; done",
        ])
        .env("VMTEST_NO_UI", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut times = Vec::new();
    use std::io::BufRead;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        times.push((line.unwrap(), Instant::now()));
    }
    assert!(child.wait().unwrap().success());
    let lines: Vec<&str> = times.iter().map(|(line, _)| line.as_str()).collect();
    assert_eq!(lines, ["1", "2", "3"]);
    for pair in times.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        assert!(gap > Duration::from_millis(700), "lines {gap:?} apart");
    }
}

#[test]
fn the_original_example_passes_one_target_and_fails_the_other() {
    // danobi/vmtest's multi-target example, with our kernels. The second
    // pattern is quoted so that its dots reach grep escaped: unquoted, bash
    // turns `^6.1\.` into `^6.1.`, which matches 6.12 (in danobi/vmtest too).
    let dir = config(
        r#"
[[target]]
name = "check if kernel is 6.12"
kernel = "kernels/vmlinuz-6.12"
command = "/bin/bash -c 'uname -r | grep -e ^6.12'"

[[target]]
name = "check if kernel is 6.1"
kernel = "kernels/vmlinuz-6.12"
command = "/bin/bash -c 'uname -r; uname -r | grep -e \"^6\\.1\\.\"'"
"#,
    );
    let run = vmtest(dir.path(), &[]);
    assert_eq!(run.code(), Some(1));
    assert!(
        run.stderr
            .contains("vmtest: [check if kernel is 6.12] PASS"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("vmtest: [check if kernel is 6.1] FAIL: the command exited with code 1"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("[check if kernel is 6.1] 6.12."),
        "{}",
        run.stdout
    );
    // Results in file order: the summary names the failure.
    assert!(
        run.stderr
            .ends_with("vmtest: 1 of 2 targets failed: check if kernel is 6.1\n"),
        "{}",
        run.stderr
    );
    run.assert_nothing_left();
}

#[test]
fn a_config_runs_every_target_and_exits_with_the_failures() {
    let dir = config(
        r#"
[[target]]
name = "check if kernel is 6.12"
kernel = "kernels/vmlinuz-6.12"
command = "/bin/bash -c 'uname -r | grep -e ^6.12'"

[[target]]
name = "check if kernel is 6.1"
kernel = "kernels/vmlinuz-6.12"
command = "/bin/bash -c 'uname -r; uname -r | grep -e \"^6\\.1\\.\"'"

[[target]]
name = "writes to its directory"
kernel = "kernels/vmlinuz-6.1"
command = "echo shared > /mnt/vmtest/shared && cat /mnt/data/marker && touch written"
[target.vm]
memory = "512M"
num_cpus = 1
[target.vm.mounts]
"/mnt/data" = { host_path = "data" }
"#,
    );
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/marker"), "from the host\n").unwrap();
    let run = vmtest(dir.path(), &[]);
    assert_eq!(run.code(), Some(2), "two targets fail");
    assert!(
        run.stdout.contains("[check if kernel is 6.12] 6.12."),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("[writes to its directory] from the host\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("vmtest: [check if kernel is 6.12] PASS"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("vmtest: [check if kernel is 6.1] FAIL: the command exited with code 1"),
        "{}",
        run.stderr
    );
    // The host root is read-only; the configuration's directory is writable at /mnt/vmtest.
    assert!(
        run.stderr
            .contains("vmtest: [writes to its directory] FAIL"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("Read-only file system"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("shared")).unwrap(),
        "shared\n"
    );
    assert!(run.stderr.contains(
        "vmtest: 2 of 3 targets failed: check if kernel is 6.1, writes to its directory"
    ));
    // -f picks targets by name; one target exits with its command's code.
    let run = vmtest(dir.path(), &["-f", "6.12$"]);
    assert_eq!(run.code(), Some(0));
    run.assert_nothing_left();
}

#[test]
fn a_rootfs_is_the_guests_root() {
    // A tiny root: the host's bash and the libraries it needs, the
    // directories a root has, and a marker.
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for dir in ["dev", "proc", "sys", "run", "tmp", "mnt", "bin"] {
        std::fs::create_dir(root.path().join(dir)).unwrap();
    }
    let libraries = Command::new("ldd")
        .arg("/bin/bash")
        .output()
        .unwrap()
        .stdout;
    let needed = String::from_utf8(libraries).unwrap();
    for path in needed
        .split_whitespace()
        .filter(|word| word.starts_with('/'))
    {
        let to = root.path().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(path, to).unwrap();
    }
    std::fs::copy("/bin/bash", root.path().join("bin/bash")).unwrap();
    std::fs::write(root.path().join("marker"), "in the rootfs\n").unwrap();
    let here = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let run = vmtest(
        here.path(),
        &[
            "-k",
            kernel("6.12").to_str().unwrap(),
            "-r",
            root.path().to_str().unwrap(),
            "read line < /marker; echo \"$line\"; echo $PWD; [ -e /usr/bin/cargo ] || echo no-host-root",
        ],
    );
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "in the rootfs\n/\nno-host-root\n");
    run.assert_nothing_left();
}

#[test]
fn a_malformed_config_is_refused_before_anything_boots() {
    let dir = config(
        "[[target]]\nname = \"both\"\nkernel = \"kernels/vmlinuz-6.1\"\nimage = \"disk.img\"\ncommand = \"true\"\n\
         [[target]]\nname = \"typo\"\nkernl = \"kernels/vmlinuz-6.1\"\ncommand = \"true\"\n",
    );
    let run = vmtest(dir.path(), &[]);
    assert_eq!(run.code(), Some(64));
    assert!(
        run.stderr
            .contains("vmtest.toml:8: target \"typo\": unknown field `kernl`"),
        "{}",
        run.stderr
    );
    assert!(run.elapsed < Duration::from_secs(2), "{:?}", run.elapsed);
    let dir = config("[[target]]\nname = \"both\"\nkernel = \"kernels/vmlinuz-6.1\"\nimage = \"disk.img\"\ncommand = \"true\"\n");
    let run = vmtest(dir.path(), &[]);
    assert_eq!(run.code(), Some(64));
    assert!(
        run.stderr
            .contains("vmtest.toml:3: target \"both\": both `kernel` and `image` are given"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_missing_kernel_fails_its_target_and_the_others_run() {
    // As danobi/vmtest: an infrastructure failure of that target alone.
    let dir = config(
        "[[target]]\nname = \"gone\"\nkernel = \"kernels/vmlinuz-5.4\"\ncommand = \"true\"\n\
         [[target]]\nname = \"here\"\nkernel = \"kernels/vmlinuz-6.12\"\ncommand = \"uname -r\"\n\
         [[target]]\nname = \"also gone\"\nkernel = \"nowhere/bzImage\"\ncommand = \"true\"\n",
    );
    let run = vmtest(dir.path(), &[]);
    assert_eq!(run.code(), Some(2), "two of three targets failed");
    assert!(run.stdout.contains("[here] 6.12."), "{}", run.stdout);
    assert!(run.stderr.contains("[here] PASS"), "{}", run.stderr);
    for (name, kernel) in [
        ("gone", "kernels/vmlinuz-5.4"),
        ("also gone", "nowhere/bzImage"),
    ] {
        let line = format!("[{name}] FAIL: cannot prepare kernel");
        assert!(run.stderr.contains(&line), "{line}: {}", run.stderr);
        let missing = format!("{} does not exist", dir.path().join(kernel).display());
        assert!(run.stderr.contains(&missing), "{missing}: {}", run.stderr);
    }
    // Alone, it is the target's failure to come up: 69.
    let dir = config(
        "[[target]]\nname = \"gone\"\nkernel = \"kernels/vmlinuz-5.4\"\ncommand = \"true\"\n",
    );
    assert_eq!(vmtest(dir.path(), &[]).code(), Some(69));
}

#[test]
fn a_missing_kernel_or_one_that_panics_is_explained() {
    let run = vmtest(Path::new("/"), &["-k", "/nonexistent/vmlinuz", "true"]);
    assert_eq!(run.code(), Some(64));
    assert!(
        run.stderr
            .contains("kernel /nonexistent/vmlinuz does not exist"),
        "{}",
        run.stderr
    );
    let here = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let run = vmtest(
        here.path(),
        &[
            "-k",
            kernel("6.1").to_str().unwrap(),
            "--kargs",
            "rdinit=/nope",
            "true",
        ],
    );
    assert_eq!(run.code(), Some(69));
    assert!(
        run.stderr.contains("the guest kernel panicked"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("Kernel panic - not syncing"),
        "{}",
        run.stderr
    );
    run.assert_nothing_left();
}

/// A tmux session of `width` x `height` running `command`.
struct Tmux {
    name: String,
}

impl Tmux {
    fn start(command: &str, width: u16, height: u16) -> Tmux {
        let name = format!("vmtest-{}-{}", std::process::id(), command.len());
        let status = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
            ])
            .arg(format!("{command}; echo EXIT=$?; sleep 600"))
            .env_remove("VMTEST_NO_UI")
            .status()
            .expect("tmux runs (apt-get install tmux)");
        assert!(status.success());
        Tmux { name }
    }

    /// The screen, with colours as escape sequences if `colours`.
    fn screen(&self, colours: bool) -> String {
        let mut args = vec!["capture-pane", "-p", "-t", &self.name];
        if colours {
            args.push("-e");
        }
        String::from_utf8(Command::new("tmux").args(&args).output().unwrap().stdout).unwrap()
    }

    fn send(&self, keys: &[&str]) {
        Command::new("tmux")
            .args(["send-keys", "-t", &self.name])
            .args(keys)
            .status()
            .unwrap();
    }

    /// Waits until the screen shows `text`.
    fn wait_for(&self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.screen(false);
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} on the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

#[test]
fn the_attended_face_shows_stages_then_marks_and_failures_in_red() {
    let dir = config(
        r#"
[[target]]
name = "passes"
kernel = "kernels/vmlinuz-6.12"
command = "for i in 1 2 3; do echo line $i; sleep 0.5; done"

[[target]]
name = "fails"
kernel = "kernels/vmlinuz-6.1"
command = "echo something went wrong; exit 4"
"#,
    );
    let tmux = Tmux::start(
        &format!(
            "cd {} && {}",
            dir.path().display(),
            env!("CARGO_BIN_EXE_vmtest")
        ),
        100,
        40,
    );
    let booting = tmux.wait_for("booting vmlinuz", Duration::from_secs(30));
    assert!(
        booting.contains("passes") && booting.contains("fails"),
        "{booting}"
    );
    let end = tmux.wait_for("EXIT=", Duration::from_secs(120));
    assert!(end.contains("✓ passes"), "{end}");
    assert!(end.contains("✗ fails"), "{end}");
    assert!(end.contains("│ something went wrong"), "{end}");
    assert!(end.contains("the command exited with code 4"), "{end}");
    assert!(end.contains("1 of 2 targets failed"), "{end}");
    assert!(end.contains("EXIT=1"), "{end}");
    // The passing target collapsed: its lines are gone.
    assert!(!end.contains("line 3"), "{end}");
    let coloured = tmux.screen(true);
    let failure = coloured
        .lines()
        .find(|line| line.contains("exited with code 4"))
        .unwrap();
    assert!(failure.contains("\x1b[31m"), "not red: {failure:?}");
    eprintln!("attended screen:\n{end}");
}

#[test]
fn the_shell_is_a_real_terminal() {
    let tmux = Tmux::start(
        &format!(
            "{} -k {} -",
            env!("CARGO_BIN_EXE_vmtest"),
            kernel("6.12").display()
        ),
        90,
        30,
    );
    tmux.wait_for("#", Duration::from_secs(60));
    tmux.send(&["echo in-guest-$((6*7)); uname -r", "Enter"]);
    let screen = tmux.wait_for("in-guest-42", Duration::from_secs(20));
    assert!(screen.contains("6.12."), "{screen}");
    // Ctrl-C reaches the guest's foreground job, not vmtest.
    tmux.send(&["sleep 1000", "Enter"]);
    std::thread::sleep(Duration::from_secs(2));
    tmux.send(&["C-c"]);
    tmux.send(&["echo still-here", "Enter"]);
    tmux.wait_for("still-here", Duration::from_secs(20));
    // The window size is passed on, and follows the host's.
    tmux.send(&["stty size", "Enter"]);
    tmux.wait_for("30 90", Duration::from_secs(20));
    Command::new("tmux")
        .args(["resize-window", "-t", &tmux.name, "-x", "120", "-y", "35"])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    tmux.send(&["stty size", "Enter"]);
    tmux.wait_for("35 120", Duration::from_secs(20));
    tmux.send(&["exit 7", "Enter"]);
    tmux.wait_for("EXIT=7", Duration::from_secs(20));
}

#[test]
fn mounts_may_be_anywhere_in_tmp_and_bash_has_its_dev_files() {
    let dir = config(
        "[[target]]\nname = \"mounted\"\nkernel = \"kernels/vmlinuz-6.12\"\n\
         command = \"echo in > /tmp/mount/made && cat <(echo substituted) /dev/stdin < /tmp/mount/made\"\n\
         [target.vm.mounts]\n\"/tmp/mount\" = { host_path = \"data\", writable = true }\n",
    );
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let run = vmtest(dir.path(), &[]);
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "substituted\nin\n");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("data/made")).unwrap(),
        "in\n"
    );
    run.assert_nothing_left();
}

#[test]
fn a_shell_fed_from_a_pipe_runs_its_input() {
    let here = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmtest"))
        .args(["-k", kernel("6.1").to_str().unwrap(), "-"])
        .current_dir(here.path())
        .env("TMPDIR", tmp.path())
        .env("VMTEST_NO_UI", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"uname -r\necho \"$PWD\"; cat <(echo from bash)\nexit 7\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(7), "{output:?}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>()[1..],
        [here.path().to_str().unwrap(), "from bash"],
        "{stdout}"
    );
    assert!(stdout.starts_with("6.1."), "{stdout}");
    common::assert_nothing_left_in(tmp.path());
}

#[test]
fn a_command_past_its_timeout_is_killed_and_fails() {
    let here = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let k = kernel("6.12");
    let run = vmtest(
        here.path(),
        &[
            "-k",
            k.to_str().unwrap(),
            "--timeout",
            "2s",
            "echo started; sleep 600",
        ],
    );
    assert_eq!(run.code(), Some(124));
    assert_eq!(run.stdout, "started\n");
    assert!(run.stderr.contains("timed out after 2s"), "{}", run.stderr);
    assert!(run.elapsed < Duration::from_secs(60), "{:?}", run.elapsed);
    run.assert_nothing_left();
    // Per target, in a configuration.
    let dir = config(
        "[[target]]\nname = \"slow\"\nkernel = \"kernels/vmlinuz-6.12\"\ncommand = \"sleep 600\"\ntimeout = \"2s\"\n\
         [[target]]\nname = \"quick\"\nkernel = \"kernels/vmlinuz-6.12\"\ncommand = \"true\"\n",
    );
    let run = vmtest(dir.path(), &[]);
    assert_eq!(run.code(), Some(1));
    assert!(
        run.stderr.contains("[slow] FAIL: timed out after 2s"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_url_that_names_no_file_is_refused() {
    let here = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let xdg = [("XDG_CACHE_HOME", cache.path())];
    for url in [
        "http://127.0.0.1:9/kernels/..",
        "http://127.0.0.1:9/k.deb#sha256=00",
    ] {
        let run = vmtest_with(here.path(), &["-k", url, "true"], &xdg);
        assert_eq!(run.code(), Some(64), "{url}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    let run = vmtest_with(
        here.path(),
        &["-k", "http://127.0.0.1:9/kernels/..", "true"],
        &xdg,
    );
    assert!(
        run.stderr.contains("does not name a file"),
        "{}",
        run.stderr
    );
}

#[test]
fn sigterm_stops_every_vm_and_leaves_no_file() {
    let here = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmtest"))
        .args([
            "-k",
            kernel("6.12").to_str().unwrap(),
            "echo started; sleep 600",
        ])
        .current_dir(here.path())
        .env("TMPDIR", tmp.path())
        .env("VMTEST_CACHE_DIR", cache.path())
        .env("VMTEST_NO_UI", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    use std::io::BufRead;
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let mut child_stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut child_stderr)
        .unwrap();
    assert_eq!(
        child.wait().unwrap().code(),
        Some(128 + 15),
        "{child_stderr}"
    );
    assert!(
        child_stderr.contains("interrupted; 1 VM(s) stopped"),
        "{child_stderr}"
    );
    common::assert_nothing_left_in(tmp.path());
}

#[test]
fn a_snapshot_of_another_cpu_model_is_never_restored() {
    // The same kernel and VM with another guest CPU: a guest saved on one
    // must never be restored as the other (the kernel read its CPU's
    // features at boot). Under KVM the host CPU itself is part of the
    // snapshot's name the same way.
    let cache = tempfile::tempdir().unwrap();
    let dir = config(
        "[[target]]\nname = \"default\"\nkernel = \"kernels/vmlinuz-6.12\"\n\
         command = \"grep -m1 'model name' /proc/cpuinfo\"\n\
         [[target]]\nname = \"haswell\"\nkernel = \"kernels/vmlinuz-6.12\"\n\
         command = \"grep -m1 'model name' /proc/cpuinfo\"\n\
         [target.vm]\nextra_args = [\"-cpu\", \"Haswell-v4\"]\n",
    );
    let cache_var = [("VMTEST_CACHE_DIR", cache.path())];
    let snapshots = || {
        std::fs::read_dir(cache.path().join("snapshots"))
            .unwrap()
            .count()
    };
    let run = vmtest_with(dir.path(), &["-f", "^default$"], &cache_var);
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert_eq!(snapshots(), 1);
    let default_model = run.stdout.clone();
    let run = vmtest_with(dir.path(), &["-f", "^haswell$"], &cache_var);
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("Haswell"), "{}", run.stdout);
    assert_ne!(run.stdout, default_model);
    assert_eq!(snapshots(), 2, "booted and saved a snapshot of its own");
}

#[test]
fn the_command_outside_a_target_directory_caches_in_the_users_cache() {
    // An installed binary: no cargo target directory above it.
    let installed = tempfile::tempdir().unwrap();
    let binary = installed.path().join("vmtest");
    std::fs::copy(env!("CARGO_BIN_EXE_vmtest"), &binary).unwrap();
    let home = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let here = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let run = |vars: &[(&str, &Path)]| {
        Command::new(&binary)
            .args(["-k", kernel("6.12").to_str().unwrap(), "true"])
            .current_dir(here.path())
            .env("TMPDIR", tmp.path())
            .env("VMTEST_NO_UI", "1")
            .env_remove("VMTEST_CACHE_DIR")
            .env_remove("XDG_CACHE_HOME")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let output = run(&[("HOME", home.path())]);
    assert!(output.status.success(), "{output:?}");
    use std::os::unix::fs::PermissionsExt;
    let cache = home.path().join(".cache/vmtest");
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(cache.join("snapshots").is_dir());
    common::assert_nothing_left_in(tmp.path());
    // Planted where another user could write: refused, and said why.
    let xdg = tempfile::tempdir().unwrap();
    std::fs::create_dir(xdg.path().join("vmtest")).unwrap();
    std::fs::set_permissions(
        xdg.path().join("vmtest"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let output = run(&[("HOME", home.path()), ("XDG_CACHE_HOME", xdg.path())]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("can be written by other users"), "{stderr}");
    assert!(
        stderr.contains(&xdg.path().join("vmtest").display().to_string()),
        "{stderr}"
    );
}

#[test]
fn the_terminal_is_given_back_when_the_shell_is_killed() {
    let nonce = format!("vmtest.test=raw{}", std::process::id());
    let vmtest = format!(
        "{} -k {} --kargs {nonce} -",
        env!("CARGO_BIN_EXE_vmtest"),
        kernel("6.12").display()
    );
    // After vmtest ends, the host's terminal is asked how it is set.
    let tmux = Tmux::start(
        &format!(
            "{vmtest}; echo VMTEST=$? TTY=$(stty -a | tr ' ' '\\n' | grep -xE -- '-?(icanon|echo)' | paste -sd,)"
        ),
        90,
        30,
    );
    tmux.wait_for("#", Duration::from_secs(60));
    // vmtest itself (QEMU's command line has the nonce too).
    let pattern = format!("^{} -k .*{nonce}", env!("CARGO_BIN_EXE_vmtest"));
    let killed = Command::new("pkill")
        .args(["-TERM", "-f", &pattern])
        .status()
        .unwrap();
    assert!(killed.success());
    let screen = tmux.wait_for("VMTEST=143", Duration::from_secs(30));
    assert!(
        screen.contains("icanon,echo"),
        "the terminal is cooked again:\n{screen}"
    );
}
