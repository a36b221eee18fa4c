//! The GitHub Action: `action.yml` and our workflows pass actionlint; no
//! input is ever pasted into shell code; hostile inputs reach `vmtest` and
//! `cargo` as whole arguments (recorded by stand-ins on `PATH`); and the
//! action's run step drives the real `vmtest` on a real kernel.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// actionlint as `scripts/setup.sh` installs it, else `VMTEST_ACTIONLINT`
/// or the one on `PATH`.
fn actionlint() -> PathBuf {
    if let Some(path) = std::env::var_os("VMTEST_ACTIONLINT") {
        return path.into();
    }
    let installed = repo_root().join(".tools/actionlint/bin/actionlint");
    match installed.is_file() {
        true => installed,
        false => "actionlint".into(),
    }
}

fn run_actionlint(dir: &Path) -> Output {
    Command::new(actionlint())
        .arg("-no-color")
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run actionlint ({error}): run scripts/setup.sh, which installs it")
        })
}

#[test]
fn actionlint_passes_on_the_action_and_every_workflow() {
    let output = run_actionlint(&repo_root());
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // It reads the action through the workflows that use it: a workflow
    // giving it an input it lacks fails.
    let copy = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(copy.path().join(".github/workflows")).unwrap();
    std::fs::copy(
        repo_root().join("action.yml"),
        copy.path().join("action.yml"),
    )
    .unwrap();
    std::fs::write(
        copy.path().join(".github/workflows/typo.yml"),
        "on: push\njobs:\n  t:\n    runs-on: ubuntu-24.04\n    steps:\n      - uses: ./\n        with:\n          kernal: x\n",
    )
    .unwrap();
    Command::new("git")
        .args(["init", "-q"])
        .current_dir(copy.path())
        .status()
        .unwrap();
    let output = run_actionlint(copy.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(
        stdout.contains("input \"kernal\" is not defined"),
        "{stdout}"
    );
}

#[test]
fn no_input_is_pasted_into_shell_code() {
    let action = std::fs::read_to_string(repo_root().join("action.yml")).unwrap();
    let runs: Vec<&str> = action
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("run:"))
        .collect();
    assert_eq!(runs.len(), 5, "{runs:?}");
    for run in runs {
        let phase = run
            .strip_prefix(r#"run: '"$GITHUB_ACTION_PATH/scripts/action.sh" "#)
            .and_then(|rest| rest.strip_suffix('\''))
            .unwrap_or_else(|| panic!("a step runs more than the script: {run}"));
        assert!(
            ["install", "cache-key", "build-key", "build", "run"].contains(&phase),
            "{run}"
        );
    }
}

/// Stand-ins for `vmtest` and `cargo` that record their arguments and the
/// variables the action sets, NUL-separated, and succeed.
struct StandIns {
    dir: tempfile::TempDir,
}

impl StandIns {
    fn new() -> StandIns {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        // A file a glob would find, were anything globbed.
        std::fs::write(dir.path().join("work/globbed"), "").unwrap();
        let record = dir.path().join("record");
        for program in ["vmtest", "cargo"] {
            let path = dir.path().join("bin").join(program);
            std::fs::write(
                &path,
                format!(
                    "#!/bin/bash\n\
                     {{ printf '%s\\0' \"$(basename \"$0\")\" \"$@\"; \
                     printf 'VMTEST_KERNEL=%s\\0VMTEST_KERNELS=%s\\0VMTEST_KERNEL_ARGS=%s\\0' \
                     \"${{VMTEST_KERNEL-unset}}\" \"${{VMTEST_KERNELS-unset}}\" \"${{VMTEST_KERNEL_ARGS-unset}}\"; }} > '{}'\n",
                    record.display()
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        StandIns { dir }
    }

    /// `scripts/action.sh run` with these inputs (`KERNEL` for
    /// `VMTEST_ACTION_KERNEL`...), in `work/`.
    fn run(&self, inputs: &[(&str, &str)]) -> Output {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap()
        );
        let mut command = Command::new(repo_root().join("scripts/action.sh"));
        command
            .arg("run")
            .current_dir(self.dir.path().join("work"))
            .env("PATH", path)
            .env_remove("VMTEST_KERNEL")
            .env_remove("VMTEST_KERNELS")
            .env_remove("VMTEST_KERNEL_ARGS")
            .stdin(Stdio::null());
        for (name, value) in inputs {
            command.env(format!("VMTEST_ACTION_{name}"), value);
        }
        command.output().unwrap()
    }

    /// What the stand-in recorded: its name, its arguments (empty ones
    /// too), then the variables.
    fn recorded(&self) -> Vec<String> {
        let bytes = std::fs::read(self.dir.path().join("record")).unwrap();
        let fields = bytes.strip_suffix(&[0]).expect("fields end with NUL");
        fields
            .split(|&byte| byte == 0)
            .map(|field| String::from_utf8(field.to_vec()).unwrap())
            .collect()
    }

    /// Nothing the hostile inputs tried to create exists.
    fn assert_untouched(&self) {
        for place in ["work/pwned", "pwned", "bin/pwned"] {
            assert!(!self.dir.path().join(place).exists(), "{place} was created");
        }
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path().join("work"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["globbed"]);
    }
}

/// What the stand-ins record of a run that sets none of the kernel variables.
const UNSET: [&str; 3] = [
    "VMTEST_KERNEL=unset",
    "VMTEST_KERNELS=unset",
    "VMTEST_KERNEL_ARGS=unset",
];
const HOSTILE_KERNEL: &str = "k'; touch pwned; echo '\n::error::x $(touch pwned)";
const HOSTILE_ARGS: &str = "console=ttyS0 $(touch pwned) `touch pwned` \"; touch pwned #";
const HOSTILE_COMMAND: &str = "echo \"$HOME\" * ; exit 3 $(touch pwned)";

#[test]
fn a_command_and_its_kernel_reach_vmtest_whole() {
    let stand_ins = StandIns::new();
    let output = stand_ins.run(&[
        ("KERNEL", HOSTILE_KERNEL),
        ("KERNEL_ARGS", HOSTILE_ARGS),
        ("COMMAND", HOSTILE_COMMAND),
        ("CARGO_TEST_ARGS", "ignored here"),
    ]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        stand_ins.recorded(),
        [
            "vmtest",
            "-k",
            HOSTILE_KERNEL,
            "--kargs",
            HOSTILE_ARGS,
            "--",
            HOSTILE_COMMAND,
            UNSET[0],
            UNSET[1],
            UNSET[2]
        ]
    );
    stand_ins.assert_untouched();

    let output = stand_ins.run(&[
        ("IMAGE", "disk *.qcow2"),
        ("UEFI", "true"),
        ("COMMAND", "true"),
    ]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        stand_ins.recorded(),
        [
            "vmtest",
            "-i",
            "disk *.qcow2",
            "--uefi",
            "--",
            "true",
            UNSET[0],
            UNSET[1],
            UNSET[2]
        ]
    );
}

#[test]
fn a_configuration_and_its_filter_reach_vmtest_whole() {
    let stand_ins = StandIns::new();
    let output = stand_ins.run(&[("CONFIG", "--help; touch pwned"), ("FILTER", "*")]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        stand_ins.recorded(),
        [
            "vmtest",
            "-c",
            "--help; touch pwned",
            "-f",
            "*",
            UNSET[0],
            UNSET[1],
            UNSET[2]
        ]
    );
    stand_ins.assert_untouched();
}

#[test]
fn cargo_test_gets_its_words_and_the_kernel_in_its_environment() {
    let stand_ins = StandIns::new();
    let output = stand_ins.run(&[
        ("KERNEL", HOSTILE_KERNEL),
        ("KERNEL_ARGS", HOSTILE_ARGS),
        (
            "CARGO_TEST_ARGS",
            "--test kernels\n-- --nocapture * $(touch pwned) ;touch\tpwned",
        ),
    ]);
    assert!(output.status.success(), "{output:?}");
    let recorded = stand_ins.recorded();
    let words: Vec<&str> = recorded.iter().map(String::as_str).collect();
    assert_eq!(
        words,
        [
            "cargo",
            "test",
            "--test",
            "kernels",
            "--",
            "--nocapture",
            "*",
            "$(touch",
            "pwned)",
            ";touch",
            "pwned",
            &format!("VMTEST_KERNEL={HOSTILE_KERNEL}"),
            &format!("VMTEST_KERNELS={HOSTILE_KERNEL}"),
            &format!("VMTEST_KERNEL_ARGS={HOSTILE_ARGS}"),
        ]
    );
    stand_ins.assert_untouched();

    // No inputs at all: a plain `cargo test`, the environment untouched.
    let output = stand_ins.run(&[]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        stand_ins.recorded(),
        ["cargo", "test", UNSET[0], UNSET[1], UNSET[2]]
    );
}

#[test]
fn a_partition_runs_its_share_under_nextest() {
    let stand_ins = StandIns::new();
    let output = stand_ins.run(&[
        ("KERNEL", "k"),
        ("PARTITION", "count:2/3"),
        ("CARGO_TEST_ARGS", "--test kernels"),
    ]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        stand_ins.recorded(),
        [
            "cargo",
            "nextest",
            "run",
            "--partition",
            "count:2/3",
            "--test",
            "kernels",
            "VMTEST_KERNEL=k",
            "VMTEST_KERNELS=k",
            UNSET[2]
        ]
    );
    std::fs::remove_file(stand_ins.dir.path().join("record")).unwrap();
    for bad in [
        "3/3",
        "count:0/2",
        "count:3/2",
        "hash:1/",
        "count:1/2; touch pwned",
        "count:1/2\n::error::x",
    ] {
        let output = stand_ins.run(&[("PARTITION", bad)]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{bad:?}: {stderr}");
        assert!(stderr.contains("partition"), "{bad:?}: {stderr}");
        assert!(!stand_ins.dir.path().join("record").exists());
    }
    stand_ins.assert_untouched();
}

/// `scripts/action.sh build-key` for a build from `path`: what it writes.
fn build_key(path: &Path) -> String {
    build_outputs(Some(path))
}

/// What `action.sh build-key` gives, for a build of `path` (else of the
/// action's own source).
fn build_outputs(path: Option<&Path>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let outputs = dir.path().join("outputs");
    let mut command = Command::new(repo_root().join("scripts/action.sh"));
    if let Some(path) = path {
        command.env("VMTEST_ACTION_VMTEST_PATH", path);
    }
    let status = command
        .arg("build-key")
        .env("GITHUB_OUTPUT", &outputs)
        .env("XDG_CACHE_HOME", "/cache home")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read_to_string(outputs).unwrap()
}

#[test]
fn the_command_is_built_once_per_source() {
    let source = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = source.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("Cargo.toml", "[workspace]\n");
    write("vmtest-cli/src/main.rs", "fn main() {}\n");
    let first = build_key(source.path());
    assert!(
        first.starts_with("build-dir=/cache home/vmtest-action\nbuild-key=vmtest-command-"),
        "{first}"
    );
    // Build output and documentation do not count; sources do.
    write("target/debug/build/generated.rs", "built");
    write("README.md", "words");
    assert_eq!(build_key(source.path()), first);
    write("vmtest-cli/src/main.rs", "fn main() { println!(); }\n");
    assert_ne!(build_key(source.path()), first);

    // A build the cache gave back of the same source is used as it is:
    // cargo never runs.
    let name = build_outputs(None)
        .lines()
        .find_map(|line| line.strip_prefix("build-key="))
        .unwrap()
        .to_string();
    let stand_ins = StandIns::new();
    let cache = tempfile::tempdir().unwrap();
    let root = cache.path().join("vmtest-action");
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("vmtest"), "#!/bin/sh\necho vmtest 0.1.0\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("vmtest"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.join("build-name"), format!("{name}\n")).unwrap();
    let github_path = cache.path().join("github-path");
    let build = || {
        let output = Command::new(repo_root().join("scripts/action.sh"))
            .arg("build")
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    stand_ins.dir.path().join("bin").display(),
                    std::env::var("PATH").unwrap()
                ),
            )
            .env("XDG_CACHE_HOME", cache.path())
            .env("GITHUB_PATH", &github_path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        stderr
    };
    let stderr = build();
    assert!(stderr.contains("from the Actions cache"), "{stderr}");
    assert!(!stand_ins.dir.path().join("record").exists(), "cargo ran");
    assert_eq!(
        std::fs::read_to_string(&github_path).unwrap(),
        format!("{}\n", bin.display())
    );
    // A build of another source (a self-hosted runner's directory, an
    // earlier step's vmtest-version) is built over.
    std::fs::write(
        root.join("build-name"),
        "vmtest-command-linux-x86_64-ref-0\n",
    )
    .unwrap();
    let stderr = build();
    assert!(stderr.contains("building vmtest"), "{stderr}");
    assert!(
        stand_ins.dir.path().join("record").exists(),
        "cargo did not run"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("build-name")).unwrap(),
        format!("{name}\n")
    );
}

#[test]
fn contradicting_inputs_are_refused_before_anything_runs() {
    let stand_ins = StandIns::new();
    for (inputs, says) in [
        (
            &[("KERNEL", "k"), ("IMAGE", "i"), ("COMMAND", "true")][..],
            "kernel or image",
        ),
        (
            &[("COMMAND", "true"), ("CONFIG", "c")][..],
            "command or config",
        ),
        (&[("CONFIG", "c"), ("KERNEL", "k")][..], "drop kernel"),
        (&[("IMAGE", "i")][..], "an image runs a command"),
        (
            &[("UEFI", "maybe"), ("COMMAND", "true")][..],
            "uefi must be",
        ),
        (
            &[("PARTITION", "count:1/2"), ("COMMAND", "true")][..],
            "drop command and config",
        ),
    ] {
        let output = stand_ins.run(inputs);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{inputs:?}: {stderr}");
        assert!(stderr.contains(says), "{inputs:?}: {stderr}");
        assert!(!stand_ins.dir.path().join("record").exists());
    }
}

#[test]
fn the_cache_key_follows_the_kernel() {
    let key = |kernel: &str| {
        let dir = tempfile::tempdir().unwrap();
        let outputs = dir.path().join("outputs");
        let status = Command::new(repo_root().join("scripts/action.sh"))
            .arg("cache-key")
            .env("GITHUB_OUTPUT", &outputs)
            .env("XDG_CACHE_HOME", "/cache home")
            .env("VMTEST_ACTION_KERNEL", kernel)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read_to_string(outputs).unwrap()
    };
    let one = key("https://example.org/linux-image-6.1.deb");
    assert!(one.starts_with("cache-dir=/cache home/vmtest\ncache-key=vmtest-kernels-"));
    assert_eq!(one, key("https://example.org/linux-image-6.1.deb"));
    assert_ne!(one, key("https://example.org/linux-image-6.12.deb"));
}

#[test]
fn the_run_step_drives_the_real_command_on_a_real_kernel() {
    let kernel = repo_root().join("kernels/vmlinuz-6.12");
    assert!(kernel.exists(), "run scripts/setup.sh first");
    let vmtest = Path::new(env!("CARGO_BIN_EXE_vmtest"));
    let path = format!(
        "{}:{}",
        vmtest.parent().unwrap().display(),
        std::env::var("PATH").unwrap()
    );
    let work = tempfile::tempdir().unwrap();
    let output = Command::new(repo_root().join("scripts/action.sh"))
        .arg("run")
        .current_dir(work.path())
        .env("PATH", path)
        .env("VMTEST_NO_UI", "1")
        .env("VMTEST_ACTION_KERNEL", &kernel)
        .env("VMTEST_ACTION_KERNEL_ARGS", "vmtest.action=\"a b\"")
        .env(
            "VMTEST_ACTION_COMMAND",
            "uname -r; grep -o 'vmtest.action=\"a b\"' /proc/cmdline; exit 7",
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(7), "the command's exit code");
    let release = kernel.canonicalize().unwrap();
    let release = release
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_start_matches("vmlinuz-");
    assert_eq!(stdout, format!("{release}\nvmtest.action=\"a b\"\n"));
}
