//! Under nextest, end to end: every test is a process of its own, run as
//! nextest runs it (`NAME --exact --nocapture`, with `NEXTEST_RUN_ID` set),
//! here by this test standing in for nextest. The test processes of one run
//! share one pool of VMs: the first VM's boot is seen by the first process
//! alone, output and verdicts reach the process that asked, concurrent
//! processes start one pool, and the pool ends when the run does, leaving
//! nothing behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// How long a pool may outlive its run's last test (`IDLE_EXIT`, then
/// shutting its VMs down).
const POOL_LINGERS: Duration = Duration::from_secs(25);

/// One nextest run: its id, its cache and its temporary directory.
struct NextestRun {
    id: String,
    cache: tempfile::TempDir,
    tmp: tempfile::TempDir,
}

impl NextestRun {
    fn new() -> NextestRun {
        let cache = tempfile::tempdir().unwrap();
        NextestRun {
            id: format!("run-{}", cache.path().display()).replace('/', "-"),
            cache,
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    /// The fixture as nextest starts it for `test` (`extra` added).
    fn command(&self, test: &str, extra: &[&str]) -> Command {
        let mut args = vec![test, "--exact"];
        args.extend_from_slice(extra);
        let mut command = fixture_command(&args, self.tmp.path());
        command
            .env("NEXTEST_RUN_ID", &self.id)
            .env("VMTEST_CACHE_DIR", self.cache.path())
            .env("VMTEST_VERBOSE", "1");
        command
    }

    /// Runs `test` as a test process of this run.
    fn run(&self, test: &str, extra: &[&str]) -> Process {
        let output = self.command(test, extra).output().unwrap();
        let process = Process {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        eprintln!(
            "{test} {extra:?}: {:?}\n--- stdout\n{}--- stderr\n{}",
            process.code, process.stdout, process.stderr
        );
        process
    }

    fn pools(&self) -> PathBuf {
        self.cache.path().join("pools")
    }

    /// The pools of this run that are running: the processes started as one
    /// (not the processes they start, which inherit the variable).
    fn running_pools(&self) -> Vec<u32> {
        let marker = format!("VMTEST_RUN_POOL={}/", self.pools().display());
        let marked: Vec<u32> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                    environ
                        .split(|&byte| byte == 0)
                        .any(|var| var.starts_with(marker.as_bytes()))
                })
            })
            .collect();
        let parent = |pid: u32| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // After the command's name in parentheses: its state, then its parent.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
        };
        let fixture = fixture_binary().canonicalize().unwrap();
        marked
            .iter()
            .copied()
            .filter(|&pid| parent(pid).is_none_or(|parent| !marked.contains(&parent)))
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == fixture)
            })
            .collect()
    }

    /// What a process is, for a failure's message.
    fn describe(pid: u32) -> String {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        format!(
            "{pid}: {:?} stat {stat:?}",
            String::from_utf8_lossy(&cmdline).replace('\0', " ")
        )
    }

    /// Waits for every pool of the run to end; returns how long it took.
    fn wait_for_the_pools(&self) -> Duration {
        let started = Instant::now();
        while !self.running_pools().is_empty() {
            assert!(
                started.elapsed() < POOL_LINGERS,
                "the pool is still running after {POOL_LINGERS:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        started.elapsed()
    }

    /// Nothing left: no pool, no QEMU, no file in TMPDIR or the pools' directory.
    fn assert_nothing_left(&self) {
        self.wait_for_the_pools();
        assert_nothing_left_in(self.tmp.path());
        let left: Vec<_> = std::fs::read_dir(self.pools())
            .map(|entries| entries.flatten().map(|entry| entry.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left in the pools' directory: {left:?}");
    }
}

struct Process {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Process {
    fn started_a_vm(&self) -> bool {
        self.stderr.contains("vmtest: starting a VM for")
    }
}

const UNAME: &str = "prints_uname[vmlinuz-6.12]";
const FAILS: &str = "fails_an_assertion";

#[test]
fn the_test_processes_of_a_run_share_its_vms() {
    let run = NextestRun::new();
    let first = run.run(UNAME, &["--nocapture"]);
    assert_eq!(first.code, Some(0));
    assert!(first.started_a_vm(), "{}", first.stderr);
    let release = kernel("6.12").1;
    for _ in 0..2 {
        let again = run.run(UNAME, &["--nocapture"]);
        assert_eq!(again.code, Some(0));
        assert!(
            again
                .stdout
                .contains(&format!("guest kernel release: {release}")),
            "the test's output reaches its process: {}",
            again.stdout
        );
        assert!(!again.started_a_vm(), "a VM of its own: {}", again.stderr);
    }
    assert_eq!(run.running_pools().len(), 1);

    // A failure, with and without --nocapture.
    let live = run.run(FAILS, &["--nocapture"]);
    assert_eq!(live.code, Some(101));
    assert!(
        live.stdout.contains("output before the failure"),
        "{}",
        live.stdout
    );
    assert!(
        live.stdout.contains("arithmetic is broken"),
        "{}",
        live.stdout
    );
    let captured = run.run(FAILS, &[]);
    assert_eq!(captured.code, Some(101));
    let section = captured
        .stdout
        .split(&format!("---- {FAILS} ----\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no failure section: {}", captured.stdout));
    assert!(section.contains("output before the failure"), "{section}");
    assert!(section.contains("arithmetic is broken"), "{section}");
    run.assert_nothing_left();
}

#[test]
fn concurrent_test_processes_start_one_pool() {
    let run = NextestRun::new();
    let mut children: Vec<_> = (0..4)
        .map(|_| {
            let mut command = run.command(UNAME, &["--nocapture"]);
            command.stdout(std::process::Stdio::piped());
            command.stderr(std::process::Stdio::piped());
            command.spawn().unwrap()
        })
        .collect();
    let mut pools = Vec::new();
    let mut seen = Vec::new();
    for child in &mut children {
        while child.try_wait().unwrap().is_none() {
            for pid in run.running_pools() {
                if !pools.contains(&pid) {
                    seen.push(NextestRun::describe(pid));
                }
                pools.push(pid);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    pools.sort_unstable();
    pools.dedup();
    assert_eq!(pools.len(), 1, "pools started: {seen:#?}");
    run.assert_nothing_left();
}

#[test]
fn the_pool_ends_with_its_runner() {
    let run = NextestRun::new();
    // A runner that exits right after its one test, as nextest does after
    // its last.
    let binary: &Path = fixture_binary();
    let mut runner = run.command(UNAME, &["--nocapture"]);
    let test_args: Vec<_> = runner.get_args().map(|arg| arg.to_owned()).collect();
    runner = {
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg("\"$@\"; exit $?")
            .arg("runner")
            .arg(binary)
            .args(test_args);
        for (var, value) in runner.get_envs() {
            match value {
                Some(value) => shell.env(var, value),
                None => shell.env_remove(var),
            };
        }
        shell
    };
    let mut runner = runner.spawn().unwrap();
    let mut pool_seen = false;
    let status = loop {
        pool_seen |= !run.running_pools().is_empty();
        if let Some(status) = runner.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    assert!(pool_seen, "the test ran without a pool");
    // Well before the pool would end for having nothing to do.
    let lingered = run.wait_for_the_pools();
    assert!(
        lingered < Duration::from_secs(8),
        "the pool outlived its runner by {lingered:?}"
    );
    run.assert_nothing_left();
}
