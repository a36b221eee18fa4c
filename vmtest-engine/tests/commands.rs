//! End to end: commands (not tests) run through the engine in a real guest,
//! as the `vmtest` command runs them: output apart or in a terminal, exit
//! codes, signals, environment, working directory.
//!
//! This binary is its own guest server (`harness = false`): in the guest,
//! `main` serves; on the host it boots Debian 6.12 (`scripts/setup.sh`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use libtest_mimic::{Arguments, Failed, Trial};
use vmtest_engine::{
    Engine, Event, GuestServer, Job, JobId, Outcome, Program, Reporter, Stream, VmShape,
    WindowSize, Work,
};

/// Keeps each job's output by stream, as a front door would show it.
#[derive(Default)]
struct Outputs {
    names: Mutex<HashMap<JobId, String>>,
    data: Mutex<HashMap<(String, Stream), Vec<u8>>>,
}

impl Reporter for Outputs {
    fn report(&self, event: &Event) {
        match event {
            Event::JobStarted { job, name, .. } => {
                self.names.lock().unwrap().insert(*job, name.to_string());
            }
            Event::Output { job, stream, data } => {
                let name = self
                    .names
                    .lock()
                    .unwrap()
                    .get(job)
                    .cloned()
                    .unwrap_or_default();
                let mut outputs = self.data.lock().unwrap();
                outputs
                    .entry((name, *stream))
                    .or_default()
                    .extend_from_slice(data);
            }
            _ => {}
        }
    }
}

impl Outputs {
    fn of(&self, name: &str, stream: Stream) -> String {
        let outputs = self.data.lock().unwrap();
        String::from_utf8_lossy(
            outputs
                .get(&(name.to_string(), stream))
                .map_or(&[][..], Vec::as_slice),
        )
        .into_owned()
    }
}

fn kernel() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels/vmlinuz-6.12")
}

/// Runs `program args` in the guest as job `name`.
fn run(engine: &Engine, name: &str, command: Program) -> Outcome {
    let finished = engine.run(Job {
        name: name.into(),
        shape: VmShape::new(kernel().canonicalize().expect("run scripts/setup.sh")),
        work: Work::Program(command),
        timeout: Some(std::time::Duration::from_secs(60)),
        allowed_splats: Vec::new(),
    });
    finished.outcome
}

fn sh(script: &str) -> Program {
    Program {
        program: "sh".into(),
        args: vec!["-c".into(), script.into()],
        ..Program::default()
    }
}

fn check(condition: bool, what: String) -> Result<(), Failed> {
    if condition {
        Ok(())
    } else {
        Err(what.into())
    }
}

fn main() {
    vmtest_guest::serve_if_requested(None);
    let args = Arguments::from_args();
    let outputs = Arc::new(Outputs::default());
    let engine = Arc::new(
        Engine::new(
            GuestServer::this_process().unwrap(),
            Arc::clone(&outputs) as Arc<dyn Reporter>,
        )
        .unwrap(),
    );
    type Body = fn(&Engine, &Outputs) -> Result<(), Failed>;
    let cases: [(&str, Body); 6] = [
        (
            "stdout_and_stderr_stay_apart_and_the_exit_code_comes_back",
            |engine, outputs| {
                let outcome = run(engine, "apart", sh("echo out; echo err >&2; exit 3"));
                check(
                    matches!(outcome, Outcome::Exited { code: 3 }),
                    format!("{outcome:?}"),
                )?;
                check(
                    outputs.of("apart", Stream::Stdout) == "out\n",
                    outputs.of("apart", Stream::Stdout),
                )?;
                check(
                    outputs.of("apart", Stream::Stderr) == "err\n",
                    outputs.of("apart", Stream::Stderr),
                )
            },
        ),
        ("a_signal_is_a_signal", |engine, _| {
            let outcome = run(engine, "signal", sh("kill -SEGV $$"));
            check(
                matches!(outcome, Outcome::Signaled { signal: 11 }),
                format!("{outcome:?}"),
            )
        }),
        (
            "a_terminal_is_a_terminal_of_the_size_asked",
            |engine, outputs| {
                let command = Program {
                    terminal: Some(WindowSize {
                        rows: 33,
                        cols: 101,
                    }),
                    ..sh("tty; stty size; test -t 0 && test -t 1 && echo both")
                };
                let outcome = run(engine, "terminal", command);
                check(
                    matches!(outcome, Outcome::Exited { code: 0 }),
                    format!("{outcome:?}"),
                )?;
                let text = outputs.of("terminal", Stream::Stdout);
                check(text.starts_with("/dev/pts/"), text.clone())?;
                check(
                    text.contains("33 101\r\n") && text.contains("both\r\n"),
                    text,
                )
            },
        ),
        (
            "environment_and_working_directory_are_as_asked",
            |engine, outputs| {
                let command = Program {
                    env: Some(vec!["GREETING=hello".into(), "PATH=/usr/bin:/bin".into()]),
                    cwd: Some("/usr/share".into()),
                    ..sh("echo $GREETING; pwd; echo ${HOME:-no home}")
                };
                let outcome = run(engine, "env", command);
                check(
                    matches!(outcome, Outcome::Exited { code: 0 }),
                    format!("{outcome:?}"),
                )?;
                let text = outputs.of("env", Stream::Stdout);
                check(text == "hello\n/usr/share\nno home\n", text)
            },
        ),
        (
            "a_missing_program_exits_127_and_says_why",
            |engine, outputs| {
                let command = Program {
                    program: "no-such-program".into(),
                    ..Program::default()
                };
                let outcome = run(engine, "missing", command);
                check(
                    matches!(outcome, Outcome::Exited { code: 127 }),
                    format!("{outcome:?}"),
                )?;
                let text = outputs.of("missing", Stream::Stderr);
                check(
                    text.contains("cannot run no-such-program: No such file or directory"),
                    text,
                )
            },
        ),
        ("commands_see_the_guest_kernel", |engine, outputs| {
            let command = Program {
                program: "uname".into(),
                args: vec!["-r".into()],
                ..Program::default()
            };
            let outcome = run(engine, "uname", command);
            check(
                matches!(outcome, Outcome::Exited { code: 0 }),
                format!("{outcome:?}"),
            )?;
            let text = outputs.of("uname", Stream::Stdout);
            check(text.starts_with("6.12."), text)
        }),
    ];
    let trials = cases
        .into_iter()
        .map(|(name, body)| {
            let (engine, outputs) = (Arc::clone(&engine), Arc::clone(&outputs));
            Trial::test(name, move || body(&engine, &outputs))
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    engine.shutdown();
    // `exit` skips destructors: the run's files go with the engine, now.
    drop(engine);
    conclusion.exit()
}
