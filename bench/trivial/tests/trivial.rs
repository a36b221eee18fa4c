//! 500 tests whose bodies do nothing, each on both Debian kernels (five
//! modules of the same 100 names), an idle test for measuring a booted VM's
//! memory, and one test on the 9p-built-in kernel.

use vmtest_harness::vmtest;

/// Defines one empty test per name, on both kernels.
macro_rules! trivial_tests {
    ($($name:ident)*) => {
        $(
            #[vmtest(kernels = ["${BENCH_KERNEL_6_1}", "${BENCH_KERNEL_6_12}"])]
            fn $name() {}
        )*
    };
}

/// A module of 100 empty tests.
macro_rules! hundred {
    ($module:ident) => {
        mod $module {
            use super::*;
            trivial_tests! {
                t000 t001 t002 t003 t004 t005 t006 t007 t008 t009
                t010 t011 t012 t013 t014 t015 t016 t017 t018 t019
                t020 t021 t022 t023 t024 t025 t026 t027 t028 t029
                t030 t031 t032 t033 t034 t035 t036 t037 t038 t039
                t040 t041 t042 t043 t044 t045 t046 t047 t048 t049
                t050 t051 t052 t053 t054 t055 t056 t057 t058 t059
                t060 t061 t062 t063 t064 t065 t066 t067 t068 t069
                t070 t071 t072 t073 t074 t075 t076 t077 t078 t079
                t080 t081 t082 t083 t084 t085 t086 t087 t088 t089
                t090 t091 t092 t093 t094 t095 t096 t097 t098 t099
            }
        }
    };
}
hundred!(a);
hundred!(b);
hundred!(c);
hundred!(d);
hundred!(e);

/// Keeps its VM busy doing nothing while the benchmark reads QEMU's memory.
#[vmtest(kernels = ["${BENCH_KERNEL_6_1}", "${BENCH_KERNEL_6_12}"])]
#[ignore = "run by bench/run.py only"]
fn idle() {
    std::thread::sleep(std::time::Duration::from_secs(4));
}

/// A line of 57 bytes (formatting, slow in an unoptimized build under
/// emulation, would be measured instead of the output).
const LINE: &[u8; 57] = b"a line of output, as a test might log it, 57 bytes long.\n";

/// Empty: the first test in a fresh VM pays for the binary's cold start.
#[vmtest(kernels = ["${BENCH_KERNEL_6_1}", "${BENCH_KERNEL_6_12}"])]
#[ignore = "run by bench/run.py only"]
fn flood_0_warm_up() {}

/// Empty: what the floods are measured against.
#[vmtest(kernels = ["${BENCH_KERNEL_6_1}", "${BENCH_KERNEL_6_12}"])]
#[ignore = "run by bench/run.py only"]
fn flood_1_empty() {}

/// 200,000 lines, one `write(2)` each (stdout is line-buffered).
#[vmtest(kernels = ["${BENCH_KERNEL_6_1}", "${BENCH_KERNEL_6_12}"])]
#[ignore = "run by bench/run.py only"]
fn flood_lines() {
    use std::io::Write;
    let mut stdout = std::io::stdout();
    for _ in 0..200_000 {
        stdout.write_all(LINE).unwrap();
    }
}

/// The same 11.4 MB in writes of 1 MiB.
#[vmtest(kernels = ["${BENCH_KERNEL_6_1}", "${BENCH_KERNEL_6_12}"])]
#[ignore = "run by bench/run.py only"]
fn flood_bulk() {
    use std::io::Write;
    let all = LINE.repeat(200_000);
    for chunk in all.chunks(1 << 20) {
        std::io::stdout().lock().write_all(chunk).unwrap();
    }
}

/// One trivial test on the kernel with 9p and virtio built in.
#[vmtest(kernel = "${BENCH_KERNEL_BUILTIN}")]
#[ignore = "run by bench/run.py only"]
fn builtin() {}

fn main() {
    vmtest_harness::main()
}

