//! The attended face, on stderr: a live block per target in file order, its
//! stage and time, and a rolling window of its last output lines. A target
//! that ends, once all before it have, is written for good above the live
//! blocks: a green pass mark, or a red failure with all its output.
//!
//! With one target, its output is not windowed but passes straight through
//! (a one-liner reads as if run locally); only its stage is drawn, on one
//! line, until the command starts.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use console::{style, Term};

use super::lines::Lines;
use super::{Ending, Face, Stage};

/// Lines shown of a running target's output.
const WINDOW: usize = 8;
/// How often the times on screen move on.
const TICK: Duration = Duration::from_millis(100);
const SPINNER: [&str; 8] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧"];

pub struct Live {
    single: bool,
    screen: Arc<Screen>,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

/// The terminal, what is drawn on it, and the ticker's stop flag.
struct Screen {
    term: Term,
    state: Mutex<State>,
    done: AtomicBool,
}

struct State {
    targets: Vec<TargetView>,
    /// Targets before this one are written for good.
    committed: usize,
    /// Lines of the live region now on screen.
    drawn: usize,
    /// No more drawing: a single target's output is flowing.
    passing_through: bool,
    started: Instant,
}

struct TargetView {
    name: String,
    stage: Stage,
    since: Instant,
    /// The last lines, and the line being written.
    window: VecDeque<String>,
    lines: Lines,
}

impl Live {
    pub fn new(names: Vec<String>, single: bool) -> Live {
        let now = Instant::now();
        let screen = Arc::new(Screen {
            term: Term::stderr(),
            state: Mutex::new(State {
                targets: names
                    .into_iter()
                    .map(|name| TargetView {
                        name,
                        stage: Stage::Waiting,
                        since: now,
                        window: VecDeque::new(),
                        lines: Lines::default(),
                    })
                    .collect(),
                committed: 0,
                drawn: 0,
                passing_through: false,
                started: now,
            }),
            done: AtomicBool::new(false),
        });
        let ticking = Arc::clone(&screen);
        let ticker = std::thread::spawn(move || {
            while !ticking.done.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                let mut state = ticking.state();
                ticking.draw(&mut state, single);
            }
        });
        Live {
            single,
            screen,
            ticker: Mutex::new(Some(ticker)),
        }
    }
}

impl Screen {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Redraws the live region: commits finished targets, then draws the rest.
    fn draw(&self, state: &mut State, single: bool) {
        if state.passing_through {
            return;
        }
        let _ = self.term.clear_last_lines(state.drawn);
        state.drawn = 0;
        while let Some(target) = state.targets.get(state.committed) {
            let Stage::Done(ending) = &target.stage else {
                break;
            };
            let block = final_block(target, ending, single);
            let _ = self.term.write_str(&block);
            state.committed += 1;
        }
        let width = usize::from(self.term.size().1).max(20);
        let spin = SPINNER
            [(state.started.elapsed().as_millis() / TICK.as_millis()) as usize % SPINNER.len()];
        let mut lines = Vec::new();
        for target in &state.targets[state.committed..] {
            let elapsed = target.since.elapsed().as_secs_f32();
            let (mark, what) = match &target.stage {
                Stage::Waiting => (style("·").dim().to_string(), "waiting".to_string()),
                Stage::Booting { what } => (
                    style(spin).cyan().to_string(),
                    format!("{what}  {elapsed:.1}s"),
                ),
                Stage::Running => (
                    style(spin).green().to_string(),
                    format!("running  {elapsed:.1}s"),
                ),
                Stage::Done(_) => (style("✓").green().to_string(), "done".into()),
            };
            lines.push(
                console::truncate_str(
                    &format!(
                        "{mark} {}  {}",
                        style(&target.name).bold(),
                        style(what).dim()
                    ),
                    width,
                    "…",
                )
                .into_owned(),
            );
            if !single {
                for line in target.window.iter().chain(partial_line(target).as_ref()) {
                    let line = format!("  │ {line}");
                    lines.push(
                        style(console::truncate_str(&line, width, "…"))
                            .dim()
                            .to_string(),
                    );
                }
            }
        }
        for line in &lines {
            let _ = self.term.write_line(line);
        }
        state.drawn = lines.len();
    }
}

/// A target's line being written, shown in its window.
fn partial_line(target: &TargetView) -> Option<String> {
    let partial = target.lines.partial();
    (!partial.is_empty()).then(|| clean(partial))
}

/// A line of output as the window shows it: no colours, no tabs.
fn clean(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    console::strip_ansi_codes(text.trim_end()).replace('\t', "    ")
}

/// What stays on screen when a target has ended.
fn final_block(target: &TargetView, ending: &Ending, single: bool) -> String {
    let mut block = String::new();
    let took = format!("{:.1}s", ending.duration.as_secs_f32());
    if ending.passed {
        block.push_str(&format!(
            "{} {}  {}\n",
            style("✓").green().bold(),
            style(&target.name).bold(),
            style(took).dim()
        ));
    } else {
        block.push_str(&format!(
            "{} {}  {}\n",
            style("✗").red().bold(),
            style(&target.name).red().bold(),
            style(took).dim()
        ));
        // With one target the output has passed through already.
        if !single {
            for line in ending.output.lines() {
                block.push_str(&format!("  {} {}\n", style("│").red(), line));
            }
        }
        for line in ending.reason.lines() {
            block.push_str(&format!("  {}\n", style(line).red()));
        }
    }
    for splat in &ending.splats {
        block.push_str(&format!(
            "  {}\n",
            style("the guest kernel logged a splat:").yellow().bold()
        ));
        for line in splat.text.lines() {
            block.push_str(&format!("  {}\n", style(line).yellow()));
        }
    }
    block
}

impl Face for Live {
    fn stage(&self, index: usize, stage: &Stage) {
        let mut state = self.screen.state();
        let target = &mut state.targets[index];
        target.stage = stage.clone();
        target.since = Instant::now();
        if self.single && matches!(stage, Stage::Running) {
            // From now on the command's output flows to the terminal.
            self.screen.draw(&mut state, true);
            let _ = self.screen.term.clear_last_lines(state.drawn);
            state.drawn = 0;
            state.passing_through = true;
        } else if self.single && matches!(stage, Stage::Done(_)) {
            state.passing_through = false;
            self.screen.draw(&mut state, true);
        } else {
            self.screen.draw(&mut state, self.single);
        }
    }

    fn output(&self, index: usize, stderr: bool, data: &[u8]) {
        if self.single {
            return super::pass_through(stderr, data);
        }
        let mut state = self.screen.state();
        let target = &mut state.targets[index];
        let window = &mut target.window;
        target.lines.push(data, |line| {
            window.push_back(clean(line));
            if window.len() > WINDOW {
                window.pop_front();
            }
        });
    }

    fn notice(&self, text: &str) {
        let mut state = self.screen.state();
        let _ = self.screen.term.clear_last_lines(state.drawn);
        state.drawn = 0;
        let _ = self
            .screen
            .term
            .write_line(&style(format!("vmtest: {text}")).yellow().to_string());
        self.screen.draw(&mut state, self.single);
    }

    fn finish(&self) {
        self.screen.done.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.lock().take() {
            let _ = ticker.join();
        }
        let mut state = self.screen.state();
        self.screen.draw(&mut state, self.single);
        if !self.single {
            let failed = state
                .targets
                .iter()
                .filter(|target| !matches!(&target.stage, Stage::Done(ending) if ending.passed))
                .count();
            let total = state.targets.len();
            let summary = match failed {
                0 => style(format!("all {total} targets passed"))
                    .green()
                    .to_string(),
                _ => style(format!("{failed} of {total} targets failed"))
                    .red()
                    .bold()
                    .to_string(),
            };
            let _ = self.screen.term.write_line(&summary);
        }
    }
}
