#!/usr/bin/env python3
"""vmtest's boot, restore and per-test benchmark, under whatever accelerator vmtest picks.

Measures, for each Debian kernel (scripts/setup.sh fetches them):
  floor      plain QEMU, same machine, memory and image (the bzImage, and
             the vmlinux vmtest extracts from it and boots), to its first
             userspace process (an init that powers off at once)
  boot       vmtest, snapshots off: QEMU start to a ready test server
  restore    vmtest, restored from the snapshot of an earlier run: the same
  per test   one empty test in a ready VM, host-observed, 500 in a row
  500 x 2    500 empty tests on both kernels in one run (two VMs overlap)
  output     200,000 lines of 57 bytes written one write(2) each, and the
             same 11.4 MB in 1 MiB writes, beside an empty test, in one VM
  memory     QEMU's RSS with one idle VM
On the 9p-built-in kernel (scripts/setup.sh --builtin-kernel), booted as a
bzImage (no PVH): one trivial test end to end (the test binary's whole run)
beside the kernel's floor (plain QEMU booting it to init=/usr/bin/true on
the host's root over 9p); and `vmtest -k K true` beside danobi/vmtest 0.18
when VMTEST_PEER names its binary (`cargo install vmtest --version 0.18.0
--root DIR`), run with /dev/kvm hidden (bench/hide-kvm.sh, as root).
And the examples' tests under `cargo nextest run` (one process, so one VM,
per test) beside `cargo test`.
And a crate's plain tests (one test binary) under `cargo test`, on the
host and with `vmtest --exec` as cargo's target runner.
And aarch64 guests (scripts/setup-arm64.sh): `vmtest --arch aarch64 ...
true` booted and restored, beside plain qemu-system-aarch64 booting the
same arm64 kernel to a power-off init.
And what N idle VMs of one shape, restored at once in processes of their
own, cost the host (their QEMUs' PSS: shared pages counted once).
Each figure is the median of --reps runs; ratios are taken within this run.
Usage: bench/run.py [--reps N] [--only SECTION,...]
"""

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "kernels"
SERIES = ["6.1", "6.12"]
QEMU = os.environ.get("VMTEST_QEMU", "qemu-system-x86_64")


def build_subject():
    """The test binary of bench/trivial (500 empty tests per kernel)."""
    out = subprocess.run(
        ["cargo", "test", "--no-run", "--message-format=json",
         "--manifest-path", str(ROOT / "bench/trivial/Cargo.toml"),
         "--target-dir", str(ROOT / "target/bench")],
        check=True, stdout=subprocess.PIPE, text=True).stdout
    for line in out.splitlines():
        message = json.loads(line)
        if message.get("target", {}).get("name") == "trivial" and message.get("executable"):
            return message["executable"]
    sys.exit("cargo did not report the benchmark's test binary")


def build_floor_initramfs(workdir):
    """A newc archive holding only the power-off init."""
    init = workdir / "init"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(init), str(ROOT / "bench/poweroff-init.c")],
                   check=True)
    archive = workdir / "floor.cpio"
    with open(archive, "wb") as out:
        subprocess.run(["cpio", "--quiet", "-o", "-H", "newc"], input=b"init\n", cwd=workdir,
                       stdout=out, check=True)
    return archive


def plain_qemu_seconds(image, accel, append, extra):
    """QEMU start to exit, plain QEMU booting `image` (one vCPU, 512 MiB)."""
    started = time.monotonic()
    subprocess.run(
        [QEMU, "-nodefaults", "-no-user-config", "-nographic", "-display", "none", "-no-reboot",
         "-machine", "pc", "-accel", accel, "-cpu", "max", "-smp", "1", "-m", "512M",
         "-kernel", str(image), "-serial", "null",
         "-append", f"console=ttyS0 panic=-1 acpi=noirq {append}",
         *extra],
        check=True, timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def floor_seconds(image, initramfs, accel):
    """QEMU start to exit for `image` straight to the power-off init."""
    return plain_qemu_seconds(image, accel, "rdinit=/init", ["-initrd", str(initramfs)])


def floor_9p_seconds(image, accel):
    """QEMU start to exit for `image` booting the host's root over 9p to
    init=/usr/bin/true (whose exit panics the kernel, which ends QEMU)."""
    return plain_qemu_seconds(
        image, accel,
        "root=root9p rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=512000 ro "
        "init=/usr/bin/true",
        ["-virtfs", "local,path=/,mount_tag=root9p,security_model=none,readonly=on,multidevs=remap"])


def builtin_bench(binary, reps, accel):
    """One trivial test end to end on the built-in kernel's bzImage, beside
    its floor."""
    if not BUILTIN.exists():
        print("  n/a  built-in kernel: kernels/builtin-6.1 is missing "
              "(scripts/setup.sh --builtin-kernel)")
        return
    args = ["--ignored", "--exact", "builtin"]
    as_is = {"VMTEST_BOOT_IMAGE_AS_IS": "1"}
    run_subject(binary, args, as_is)  # makes the snapshot
    runs = {"floor": [], "restored": [], "booted": []}
    for _ in range(reps):
        runs["floor"].append(floor_9p_seconds(BUILTIN, accel))
        runs["restored"].append(run_subject(binary, args, as_is)[0])
        runs["booted"].append(run_subject(binary, args, dict(as_is, VMTEST_SNAPSHOT="0"))[0])
    floor, restored, booted = (statistics.median(runs[name]) for name in runs)
    print(f"  b-in floor, bzImage to init=/usr/bin/true on 9p {floor:6.2f} s")
    print(f"  b-in one trivial test end to end, restored      {restored:6.2f} s"
          f"   {restored / floor:4.2f}x its floor")
    print(f"  b-in one trivial test end to end, snapshots off {booted:6.2f} s"
          f"   {booted / floor:4.2f}x its floor")


def nextest_bench(reps):
    """The examples' tests under `cargo nextest run` and under `cargo test`."""
    packages = ["-p", "vmtest-example-bpf", "-p", "vmtest-example-basics"]
    probe = subprocess.run(["cargo", "nextest", "--version"], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if probe.returncode != 0:
        print("  n/a  cargo nextest is not installed")
        return
    subprocess.run(["cargo", "test", "-q", "--no-run", *packages], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    commands = {"cargo test": ["cargo", "test", "-q", *packages],
                "cargo nextest run": ["cargo", "nextest", "run", "--no-fail-fast", *packages]}
    runs = {name: [] for name in commands}
    for command in commands.values():
        subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)  # snapshots for every VM
    for _ in range(reps):
        for name, command in commands.items():
            started = time.monotonic()
            result = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            if result.returncode != 0:
                sys.exit(f"{command} failed:\n{result.stdout}")
            runs[name].append(time.monotonic() - started)
    test, nextest = (statistics.median(runs[name]) for name in commands)
    print(f"  exs  the examples' tests, cargo test           {test:6.2f} s")
    print(f"  exs  the examples' tests, cargo nextest run    {nextest:6.2f} s"
          f"   {nextest / test:4.2f}x cargo test")


def runner_bench(reps):
    """The plain `#[test]`s of examples/bpf's library (one test binary):
    `cargo test` on the host, and with `vmtest --exec` as cargo's runner."""
    ours = build_command()
    kernel = (KERNELS / "vmlinuz-6.12").resolve()
    base = ["cargo", "test", "-q", "-p", "vmtest-example-bpf", "--lib"]
    subprocess.run([*base, "--no-run"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runner = {"CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER": f"{ours} -k {kernel} --exec"}
    timed(base, runner, cwd=ROOT)  # makes the snapshot
    runs = {"host": [], "runner": []}
    for _ in range(reps):
        runs["host"].append(timed(base, cwd=ROOT))
        runs["runner"].append(timed(base, runner, cwd=ROOT))
    host, guest = (statistics.median(runs[name]) for name in runs)
    print(f"  run  examples/bpf's lib tests, cargo test      {host:6.2f} s")
    print(f" 6.12  the same, vmtest --exec as cargo's runner  {guest:6.2f} s"
          f"   {guest - host:+5.2f} s per test binary")


ARM64 = KERNELS / "arm64"


def arm64_bench(reps):
    """aarch64 guests under emulation (scripts/setup-arm64.sh): plain
    qemu-system-aarch64 booting each arm64 kernel to a power-off init,
    beside `vmtest --arch aarch64 ... true` (512 MiB, one vCPU), booted and
    restored."""
    if not (ARM64 / "vmtest").exists():
        print("  n/a  aarch64: kernels/arm64 is missing (scripts/setup-arm64.sh)")
        return
    ours = build_command()
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        subprocess.run(["aarch64-linux-gnu-gcc", "-static", "-O2", "-o", str(workdir / "init"),
                        str(ROOT / "bench/poweroff-init.c")], check=True)
        floor_initramfs = workdir / "floor.cpio"
        with open(floor_initramfs, "wb") as out:
            subprocess.run(["cpio", "--quiet", "-o", "-H", "newc"], input=b"init\n", cwd=workdir,
                           stdout=out, check=True)
        env = {"VMTEST_GUEST_AARCH64": str(ARM64 / "vmtest")}
        for series in SERIES:
            kernel = (ARM64 / f"vmlinuz-{series}").resolve()
            config = workdir / f"vmtest-{series}.toml"
            config.write_text(
                f'[[target]]\nname = "arm"\nkernel = "{kernel}"\nrootfs = "{ARM64 / "root"}"\n'
                'arch = "aarch64"\ncommand = "true"\n[target.vm]\nmemory = "512M"\nnum_cpus = 1\n')
            command = [ours, "-c", config]
            timed(command, env)  # makes the snapshot
            runs = {"floor": [], "booted": [], "restored": []}
            for _ in range(reps):
                started = time.monotonic()
                subprocess.run(
                    ["qemu-system-aarch64", "-nodefaults", "-no-user-config", "-nographic",
                     "-display", "none", "-no-reboot", "-machine", "virt,gic-version=max",
                     "-accel", "tcg,thread=single", "-cpu", "max", "-smp", "1", "-m", "512M",
                     "-kernel", str(kernel), "-initrd", str(floor_initramfs), "-serial", "null",
                     "-append", "console=ttyAMA0 panic=-1 rdinit=/init"],
                    check=True, timeout=300, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                runs["floor"].append(time.monotonic() - started)
                runs["booted"].append(timed(command, dict(env, VMTEST_SNAPSHOT="0")))
                runs["restored"].append(timed(command, env))
            floor, booted, restored = (statistics.median(runs[name]) for name in runs)
            print(f"{series:>5}  aarch64 floor, Image to first process   {floor:6.2f} s")
            print(f"{series:>5}  aarch64 `vmtest ... true`, booted        {booted:6.2f} s"
                  f"   {booted / floor:4.2f}x its floor")
            print(f"{series:>5}  aarch64 `vmtest ... true`, restored      {restored:6.2f} s"
                  f"   {restored / floor:4.2f}x its floor")


def extracted_vmlinux(image):
    """The vmlinux vmtest extracted from `image` and boots, if any."""
    digest = hashlib.sha256(image.read_bytes()).hexdigest()[:16]
    path = ROOT / "target/bench/vmtest" / f"vmlinux-{digest}"
    return path if path.exists() else None


BUILTIN = KERNELS / "builtin-6.1/bzImage"


def subject_env():
    return dict(os.environ, BENCH_KERNEL_6_1=str(KERNELS / "vmlinuz-6.1"),
                BENCH_KERNEL_6_12=str(KERNELS / "vmlinuz-6.12"),
                BENCH_KERNEL_BUILTIN=str(BUILTIN))


def run_subject(binary, args, env_extra=None):
    env = dict(subject_env(), VMTEST_VERBOSE="1")
    env.update(env_extra or {})
    started = time.monotonic()
    result = subprocess.run([binary, *args], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, timeout=600)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"benchmark run {args} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed, result.stderr


def seconds(text):
    """A Rust `{:?}` duration such as 4.21s or 85.3ms, in seconds."""
    value, unit = re.fullmatch(r"([\d.]+)(s|ms|µs)", text).groups()
    return float(value) / {"s": 1, "ms": 1e3, "µs": 1e6}[unit]


def boots(stderr, how="booted"):
    """How long each VM took to come up, `booted` or `restored`."""
    return [seconds(m) for m in re.findall(how + r" in (\S+) ", stderr)]


def per_test(stderr):
    return [seconds(m) for m in re.findall(r"ran in (\S+) in its VM", stderr)]


def output_bench(binary, series, reps):
    """Output at the guest's speed: the flood tests' time in a ready VM,
    less an empty test's."""
    other = {"6.1": "6.12", "6.12": "6.1"}[series]
    names = [f"flood_1_empty[vmlinuz-{series}]", f"flood_bulk[vmlinuz-{series}]",
             f"flood_lines[vmlinuz-{series}]"]
    pattern = re.compile(r"vmtest: (\S+) ran in (\S+) in its VM")
    times = {name: [] for name in names}
    for _ in range(reps):
        _, stderr = run_subject(binary, ["--ignored", "--test-threads=1", "flood_",
                                         "--skip", f"[vmlinuz-{other}]"])
        for name, took in pattern.findall(stderr):
            if name in times:
                times[name].append(seconds(took))
    empty, bulk, lines = (statistics.median(times[name]) for name in names)
    megabytes = 200_000 * 57 / 1e6
    print(f"{series:>5}  output, 11.4 MB in 1 MiB writes     {bulk - empty:6.2f} s"
          f"   {megabytes / (bulk - empty):5.1f} MB/s")
    print(f"{series:>5}  output, 200,000 lines, a write each  {lines - empty:6.2f} s"
          f"   {200_000 / (lines - empty):8.0f} lines/s, {(lines - empty) / (bulk - empty):4.1f}x"
          " the large writes")


def qemu_memory_mib(marker, field):
    """The sum of `field` (from /proc/PID/smaps_rollup: `Rss`, or `Pss`,
    where pages processes share count once between them) over the QEMU
    processes whose command line mentions `marker`."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"qemu-system" not in cmdline or marker.encode() not in cmdline:
                continue
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += int(re.search(rf"^{field}:\s+(\d+) kB", rollup, re.M).group(1))
    return total / 1024


def concurrent_pss(binary, series, count):
    """The peak PSS of `count` VMs of one shape, restored at once, each the
    idle test of a process of its own (as under nextest)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(subject_env(), TMPDIR=tmp)
        children = [subprocess.Popen([binary, "--ignored", "--exact", f"idle[vmlinuz-{series}]"],
                                     env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL) for _ in range(count)]
        deadline = time.monotonic() + 120
        peak = 0.0
        while any(child.poll() is None for child in children) and time.monotonic() < deadline:
            peak = max(peak, qemu_memory_mib(tmp, "Pss"))
            time.sleep(0.2)
        for child in children:
            child.wait()
        return peak


def idle_rss(binary, series):
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(subject_env(), TMPDIR=tmp)
        child = subprocess.Popen([binary, "--ignored", "--exact", f"idle[vmlinuz-{series}]"],
                                 env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        peak = 0.0
        while child.poll() is None and time.monotonic() < deadline:
            peak = max(peak, qemu_memory_mib(tmp, "Rss"))
            time.sleep(0.2)
        child.wait()
        return peak


def build_command():
    """The vmtest command's binary."""
    subprocess.run(["cargo", "build", "-q", "-p", "vmtest-cli"], cwd=ROOT, check=True)
    return ROOT / "target/debug/vmtest"


def timed(command, env_extra=None, cwd="/"):
    """Seconds `command` takes, in `cwd`; it must succeed."""
    env = dict(os.environ, VMTEST_NO_UI="1")
    env.update(env_extra or {})
    started = time.monotonic()
    result = subprocess.run(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, timeout=300)
    if result.returncode != 0:
        sys.exit(f"{command} failed:\n{result.stderr}")
    return time.monotonic() - started


def command_bench(reps, initramfs, accel):
    """`vmtest -k K true` on the built-in kernel: ours (restored, and with
    snapshots off), as if it had no PVH entry, the peer's, and the floor,
    interleaved."""
    if not BUILTIN.exists():
        print("  n/a  `vmtest -k K true`: kernels/builtin-6.1 is missing "
              "(scripts/setup.sh --builtin-kernel)")
        return
    ours = build_command()
    peer = os.environ.get("VMTEST_PEER")
    as_is = {"VMTEST_BOOT_IMAGE_AS_IS": "1"}
    variants = {
        "ours, restored": {},
        "ours, restored, bzImage as is": as_is,
        "ours, snapshots off": {"VMTEST_SNAPSHOT": "0"},
        "ours, snapshots off, bzImage as is": dict(as_is, VMTEST_SNAPSHOT="0"),
    }
    for env in variants.values():
        timed([ours, "-k", BUILTIN, "true"], env)  # makes the snapshots
    runs = {name: [] for name in variants}
    runs["floor, bzImage"] = []
    if peer:
        runs["danobi/vmtest 0.18"] = []
    for _ in range(reps):
        for name, env in variants.items():
            runs[name].append(timed([ours, "-k", BUILTIN, "true"], env))
        runs["floor, bzImage"].append(floor_seconds(BUILTIN, initramfs, accel))
        if peer:
            runs["danobi/vmtest 0.18"].append(
                timed([ROOT / "bench/hide-kvm.sh", peer, "-k", BUILTIN, "true"]))
    medians = {name: statistics.median(times) for name, times in runs.items()}
    base = medians.get("danobi/vmtest 0.18")
    for name, seconds in medians.items():
        ratio = f"   {seconds / base:4.2f}x danobi/vmtest" if base else ""
        print(f"  cmd  `vmtest -k builtin-6.1 true`, {name:<34} {seconds:6.2f} s{ratio}")


SECTIONS = ["builtin", "command", "boot", "pertest", "output", "wall", "nextest", "runner",
            "memory", "arm64"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help="the sections to run, comma-separated: " + ", ".join(SECTIONS))
    options = parser.parse_args()
    reps = options.reps
    only = set(options.only.split(","))
    if only - set(SECTIONS):
        sys.exit(f"unknown sections: {', '.join(sorted(only - set(SECTIONS)))}")
    for series in SERIES:
        if not (KERNELS / f"vmlinuz-{series}").exists():
            sys.exit(f"kernels/vmlinuz-{series} is missing: run scripts/setup.sh")

    binary = build_subject()
    median = statistics.median
    accel = "kvm" if os.environ.get("VMTEST_ACCEL") == "kvm" else "tcg,thread=single"
    print(f"vmtest benchmark: {reps} repetitions, medians; QEMU -accel {accel}; "
          f"{os.cpu_count()} host CPUs")

    if "builtin" in only:
        builtin_bench(binary, reps, accel)
    with tempfile.TemporaryDirectory() as workdir:
        initramfs = build_floor_initramfs(Path(workdir))
        if "command" in only:
            command_bench(reps, initramfs, accel)
        for series in SERIES if "boot" in only else []:
            image = (KERNELS / f"vmlinuz-{series}").resolve()
            one = ["--exact", f"a::t000[vmlinuz-{series}]"]
            run_subject(binary, one)  # makes the snapshot
            boot = median(boots(run_subject(binary, one, {"VMTEST_SNAPSHOT": "0"})[1])[0]
                          for _ in range(reps))
            restore = median(boots(run_subject(binary, one)[1], "restored")[0]
                             for _ in range(reps))
            whole = median(run_subject(binary, one)[0] for _ in range(reps))
            floors = {"bzImage": median(floor_seconds(image, initramfs, accel)
                                        for _ in range(reps))}
            booted = extracted_vmlinux(image)
            if booted:
                floors["vmlinux"] = median(floor_seconds(booted, initramfs, accel)
                                           for _ in range(reps))
            for kind, floor in floors.items():
                print(f"{series:>5}  floor, {kind} to first process {floor:8.2f} s")
            floor = floors["vmlinux" if booted else "bzImage"]
            kind = "vmlinux" if booted else "bzImage"
            for what, seconds in [("boot", boot), ("restore", restore)]:
                print(f"{series:>5}  {what:<7} to ready server ({kind}) {seconds:8.2f} s"
                      f"   {seconds / floor:4.2f}x its floor,"
                      f" {seconds / floors['bzImage']:4.2f}x the bzImage floor")
            print(f"{series:>5}  one trivial test end to end, restored {whole:6.2f} s"
                  f"   {whole / floor:4.2f}x its floor")

    for series in SERIES if "pertest" in only else []:
        costs = []
        for _ in range(reps):
            _, stderr = run_subject(binary, [f"[vmlinuz-{series}]", "--test-threads=1"])
            costs.append(median(per_test(stderr)[1:]))  # the first exec reads the binary cold
        print(f"{series:>5}  per empty test, 500 in a ready VM {median(costs) * 1000:6.1f} ms")

    for series in SERIES if "output" in only else []:
        output_bench(binary, series, reps)

    if "wall" in only:
        walls = []
        for _ in range(reps):
            wall, _ = run_subject(binary, [])
            walls.append(wall)
        print(f"  all  500 tests x 2 kernels, wall    {median(walls):6.2f} s")

    if "nextest" in only:
        nextest_bench(reps)

    if "runner" in only:
        runner_bench(reps)

    if "arm64" in only:
        arm64_bench(reps)

    for series in SERIES if "memory" in only else []:
        rss = median(idle_rss(binary, series) for _ in range(reps))
        print(f"{series:>5}  QEMU RSS, one idle VM (512 MiB)   {rss:6.0f} MiB")
        for count in (1, 4):
            pss = median(concurrent_pss(binary, series, count) for _ in range(reps))
            print(f"{series:>5}  QEMU PSS, {count} idle VMs at once, restored {pss:6.0f} MiB"
                  f"   {pss / count:4.0f} MiB each")


if __name__ == "__main__":
    main()
