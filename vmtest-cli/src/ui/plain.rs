//! The unattended face: plain lines, easy to grep in a CI log.
//!
//! vmtest's own lines start with `vmtest:` and go to stderr. With one
//! target, the command's output passes through untouched; with several,
//! each line of it starts with `[target name] `, on the stream it was
//! written to. A summary in file order ends the run.

use parking_lot::{Mutex, MutexGuard};
use std::io::Write;

use super::lines::Lines;
use super::{Ending, Face, Stage};

pub struct Plain {
    names: Vec<String>,
    single: bool,
    state: Mutex<State>,
}

struct State {
    /// Per target, per stream (stdout, stderr): the line being written.
    partial: Vec<[Lines; 2]>,
    endings: Vec<Option<Ending>>,
}

impl Plain {
    pub fn new(names: Vec<String>, single: bool) -> Plain {
        let count = names.len();
        Plain {
            names,
            single,
            state: Mutex::new(State {
                partial: (0..count).map(|_| Default::default()).collect(),
                endings: vec![None; count],
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// `vmtest: [name] ` (or `vmtest: ` with one target).
    fn prefix(&self, index: usize) -> String {
        match self.single {
            true => "vmtest: ".into(),
            false => format!("vmtest: [{}] ", self.names[index]),
        }
    }

    /// Writes each line of `data` that ends with the target's name before
    /// it; with `flush`, what is left of the last line too.
    fn lines(&self, index: usize, stderr: bool, partial: &mut Lines, data: &[u8], flush: bool) {
        let mut text = Vec::new();
        let mut write = |line: &[u8]| {
            text.extend_from_slice(format!("[{}] ", self.names[index]).as_bytes());
            text.extend_from_slice(line);
            if line.last() != Some(&b'\n') {
                text.push(b'\n');
            }
        };
        partial.push(data, &mut write);
        if flush {
            let rest = partial.take_partial();
            if !rest.is_empty() {
                write(&rest);
            }
        }
        if text.is_empty() {
            return;
        }
        let _ = match stderr {
            true => std::io::stderr().lock().write_all(&text),
            false => std::io::stdout().lock().write_all(&text),
        };
    }
}

impl Face for Plain {
    fn stage(&self, index: usize, stage: &Stage) {
        let prefix = self.prefix(index);
        match stage {
            Stage::Waiting => {}
            Stage::Booting { what } => eprintln!("{prefix}{what}"),
            Stage::Running => eprintln!("{prefix}running"),
            Stage::Done(ending) => {
                let mut state = self.state();
                if !self.single {
                    for stream in 0..2 {
                        let mut partial = std::mem::take(&mut state.partial[index][stream]);
                        self.lines(index, stream == 1, &mut partial, &[], true);
                    }
                }
                for splat in &ending.splats {
                    eprintln!("{prefix}the guest kernel logged a splat:\n{}", splat.text);
                }
                match (ending.passed, self.single) {
                    (true, true) => {}
                    (true, false) => {
                        eprintln!("{prefix}PASS ({:.1}s)", ending.duration.as_secs_f32())
                    }
                    (false, _) => eprintln!("{prefix}FAIL: {}", ending.reason),
                }
                state.endings[index] = Some(ending.clone());
            }
        }
    }

    fn output(&self, index: usize, stderr: bool, data: &[u8]) {
        if self.single {
            return super::pass_through(stderr, data);
        }
        let mut state = self.state();
        let mut partial = std::mem::take(&mut state.partial[index][usize::from(stderr)]);
        self.lines(index, stderr, &mut partial, data, false);
        state.partial[index][usize::from(stderr)] = partial;
    }

    fn notice(&self, text: &str) {
        eprintln!("vmtest: {text}");
    }

    fn finish(&self) {
        if self.single {
            return;
        }
        let state = self.state();
        let failed: Vec<&str> = self
            .names
            .iter()
            .zip(&state.endings)
            .filter(|(_, ending)| !ending.as_ref().is_some_and(|ending| ending.passed))
            .map(|(name, _)| name.as_str())
            .collect();
        match failed.as_slice() {
            [] => eprintln!("vmtest: all {} targets passed", self.names.len()),
            failed => eprintln!(
                "vmtest: {} of {} targets failed: {}",
                failed.len(),
                self.names.len(),
                failed.join(", ")
            ),
        }
    }
}
