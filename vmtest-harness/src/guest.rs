//! The test itself, inside the guest: the engine's test server forks a
//! child per test and calls [`run_test`] in it. No listing, no argument
//! parsing, no exec: under emulation, starting a process costs tens of
//! milliseconds.

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::io::Write;
use std::{panic, thread};

use vmtest_engine::Verdict;

use crate::registry::{self, ShouldPanic, VmTest};

/// Runs the test with path `path` in this (forked) process and says how it
/// went; the engine sends the verdict to the host, apart from the output.
pub(crate) fn run_test(path: &str) -> Verdict {
    match registry::find(path) {
        Some(test) => execute(test),
        None => Verdict::Failed {
            message: format!(
                "no #[vmtest] named {path} in this binary (was it rebuilt while the tests ran?)"
            ),
        },
    }
}

/// Runs the test and judges the outcome against `#[should_panic]`.
///
/// libtest runs a test on a thread named after it; spawning one costs about
/// 9 ms of the guest's emulated CPU per test, so the test runs on the main
/// thread instead and the panic hook prints the name libtest would.
fn execute(test: &'static VmTest) -> Verdict {
    name_the_main_thread_in_panics(test.path());
    judge(panic::catch_unwind(test.run), test.should_panic)
}

fn name_the_main_thread_in_panics(test_name: String) {
    panic::set_hook(Box::new(move |info| {
        let current = thread::current();
        let name = match current.name() {
            Some("main") | None => &test_name,
            Some(name) => name,
        };
        let message = panic_message(info.payload()).unwrap_or("Box<dyn Any>");
        let location = info
            .location()
            .map(|location| location.to_string())
            .unwrap_or_default();
        let backtrace = Backtrace::capture();
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(
            stderr,
            "\nthread '{name}' panicked at {location}:\n{message}"
        );
        let _ = match backtrace.status() {
            BacktraceStatus::Captured => writeln!(stderr, "stack backtrace:\n{backtrace}"),
            _ => writeln!(
                stderr,
                "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace"
            ),
        };
    }));
}

fn judge(outcome: thread::Result<Result<(), String>>, should_panic: ShouldPanic) -> Verdict {
    let failed = |message: String| Verdict::Failed { message };
    match (outcome, should_panic) {
        (Ok(Ok(())), ShouldPanic::No) => Verdict::Passed,
        (Ok(Err(message)), ShouldPanic::No) => failed(message),
        // The message is in the output already, printed by the hook.
        (Err(payload), ShouldPanic::No) => Verdict::Panicked {
            message: panic_message(&*payload).unwrap_or("Box<dyn Any>").to_string(),
        },
        (Ok(_), _) => failed("test did not panic as expected".into()),
        (Err(_), ShouldPanic::Yes) => Verdict::Passed,
        (Err(payload), ShouldPanic::Expected(expected)) => match panic_message(&*payload) {
            Some(message) if message.contains(expected) => Verdict::Passed,
            Some(message) => failed(format!(
                "panic did not contain expected string\n      panic message: {message:?}\n expected substring: {expected:?}"
            )),
            None => failed(format!(
                "expected panic with string value,\n found non-string value\n     expected substring: {expected:?}"
            )),
        },
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panicked(message: &'static str) -> thread::Result<Result<(), String>> {
        Err(Box::new(message))
    }

    #[test]
    fn plain_tests_pass_unless_they_fail_or_panic() {
        assert_eq!(judge(Ok(Ok(())), ShouldPanic::No), Verdict::Passed);
        assert_eq!(
            judge(Ok(Err("Error: Oops".into())), ShouldPanic::No),
            Verdict::Failed {
                message: "Error: Oops".into()
            }
        );
        assert_eq!(
            judge(panicked("boom"), ShouldPanic::No),
            Verdict::Panicked {
                message: "boom".into()
            }
        );
    }

    #[test]
    fn should_panic_checks_the_expected_substring() {
        assert_eq!(
            judge(panicked("big boom"), ShouldPanic::Yes),
            Verdict::Passed
        );
        assert_eq!(
            judge(panicked("big boom"), ShouldPanic::Expected("boom")),
            Verdict::Passed
        );
        let Verdict::Failed { message } = judge(panicked("fizzle"), ShouldPanic::Expected("boom"))
        else {
            panic!("a panic without the expected text must fail");
        };
        assert!(
            message.contains("panic did not contain expected string"),
            "{message}"
        );
        assert_eq!(
            judge(Ok(Ok(())), ShouldPanic::Yes),
            Verdict::Failed {
                message: "test did not panic as expected".into()
            }
        );
    }
}
