//! Disk-image jobs: QEMU boots a whole image (BIOS or UEFI) that runs
//! qemu-guest-agent itself, and the command runs through the agent
//! (`guest-exec`), as in danobi/vmtest.
//!
//! Unlike a kernel VM there is no init of ours in the guest, so:
//! - the command's stdout and stderr are streamed live through two
//!   virtio-serial ports of their own, which a small script finds by name
//!   and redirects to (the agent alone returns output only at the end);
//! - the job's directory is shared over 9p and mounted through the agent
//!   (a kernel without 9p goes on without it, and says so);
//! - the exit status comes from `guest-exec-status`, polled.
//!
//! The image is never written to (`snapshot=on`).

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use vmtest_contract::messages::{ExitStatus, JobId, Stream};

use super::error::{DiskImageError, SetupError};
use super::pool::RunSetup;
use crate::host::run_dir::VmDir;
use crate::model::arch::Arch;
use crate::model::death::{read_console, DeathCause, VmDeath, VmLogs};
use crate::model::events::Event;
use crate::model::job::Program;
use crate::model::outcome::{Captured, Finished, Outcome};
use crate::qemu::agent::{Agent, AgentError};
use crate::qemu::command::{self, Export, Firmware, Machine, QemuConfig};
use crate::qemu::monitor::Monitor;
use crate::qemu::process::QemuProcess;
use crate::qemu::shell::quoted;
use crate::qemu::wire::WireError;

/// The virtio-serial port name qemu-ga looks for.
const AGENT_PORT: &str = "org.qemu.guest_agent.0";
/// The ports the command's output is streamed through.
const STDOUT_PORT: &str = "org.vmtest.stdout";
const STDERR_PORT: &str = "org.vmtest.stderr";
/// The 9p tag of the shared directory.
const SHARE_TAG: &str = "vmtest_share0";
/// How often the command's status is asked for.
const STATUS_EVERY: Duration = Duration::from_millis(50);
/// After the command exits, its last output may still be on its way.
const OUTPUT_SETTLE: Duration = Duration::from_millis(200);
const OUTPUT_SETTLE_MAX: Duration = Duration::from_secs(2);

/// A command to run in a disk image.
#[derive(Debug, Clone)]
pub struct ImageJob {
    pub name: String,
    /// The disk image (qcow2 or raw).
    pub image: PathBuf,
    /// The architecture of the image's system.
    pub arch: Arch,
    /// Boot through UEFI rather than BIOS.
    pub uefi: bool,
    /// UEFI firmware, instead of the system's OVMF.
    pub firmware: Option<PathBuf>,
    pub cpus: u32,
    pub memory_mib: u32,
    pub qemu_binary: Option<PathBuf>,
    pub qemu_args: Vec<String>,
    /// A host directory, and where the guest mounts it (read-write).
    pub shared: Option<(PathBuf, PathBuf)>,
    /// Run in the shared directory's guest path, if there is one.
    pub program: Program,
    /// Failed, and the image shut down, after this long; `None`: no limit.
    pub timeout: Option<Duration>,
}

/// Boots `job`'s image as VM `vm`, runs its command as job `id`.
pub(crate) fn run(setup: &RunSetup, vm: u64, id: JobId, job: &ImageJob) -> Finished {
    let started = Instant::now();
    let output = Arc::new(Mutex::new(Captured::default()));
    let outcome = match Session::boot(setup, vm, job, id, &output) {
        Ok(mut session) => session.run(setup, id, job),
        Err(error) => Outcome::SetupFailed(Arc::new(error)),
    };
    let output = std::mem::take(&mut *output.lock());
    Finished {
        outcome,
        splats: Vec::new(),
        output,
        duration: started.elapsed(),
    }
}

/// Why no exit status came.
enum Ended {
    /// The agent stopped answering.
    Lost(WireError),
    /// The agent says the process ended, but not how.
    Unknown,
}

impl From<WireError> for Ended {
    fn from(error: WireError) -> Ended {
        Ended::Lost(error)
    }
}

/// A booted image with its agent.
struct Session {
    vm: u64,
    qemu: QemuProcess,
    agent: Agent,
    monitor: Option<Monitor>,
    console: PathBuf,
    /// When the streams last delivered output.
    streams: Vec<std::thread::JoinHandle<()>>,
    last_output: Arc<Mutex<Instant>>,
    _dir: VmDir,
}

impl Session {
    fn boot(
        setup: &RunSetup,
        vm: u64,
        job: &ImageJob,
        id: JobId,
        output: &Arc<Mutex<Captured>>,
    ) -> Result<Session, SetupError> {
        let settings = &setup.settings;
        let boot_error = |source| SetupError::ImageBoot {
            image: job.image.clone(),
            source: Box::new(source),
        };
        let dir = setup
            .run_dir
            .vm_dir(vm)
            .map_err(|error| boot_error(DiskImageError::Workdir(error)))?;
        let path = |name: &str| dir.path().join(name);
        let (console, agent_socket, stdout, stderr, monitor) = (
            path("console.log"),
            path("agent.sock"),
            path("stdout.sock"),
            path("stderr.sock"),
            path("qmp.sock"),
        );
        // The `virt` board has no BIOS: its images boot through UEFI.
        let uefi = job.uefi || !job.arch.has_bios();
        let firmware_path = match (uefi, &job.firmware) {
            (false, _) => None,
            (true, Some(path)) => Some(path.clone()),
            (true, None) => {
                Some(default_firmware(job.arch).ok_or(SetupError::NoFirmware { arch: job.arch })?)
            }
        };
        let exports: Vec<Export> = job
            .shared
            .iter()
            .map(|(host, _)| Export {
                tag: SHARE_TAG.into(),
                host_path: host.clone(),
                writable: true,
            })
            .collect();
        let args = command::arguments(&QemuConfig {
            machine: Machine {
                arch: job.arch,
                accel: settings.accel_for(job.arch),
                kvm_cpu: None,
                cpus: job.cpus,
                memory_mib: job.memory_mib,
            },
            boot: command::Boot::Image {
                image: &job.image,
                format: image_format(&job.image),
                firmware: firmware_path.as_deref().map(firmware),
            },
            exports: &exports,
            ports: &[
                (AGENT_PORT, &agent_socket),
                (STDOUT_PORT, &stdout),
                (STDERR_PORT, &stderr),
            ],
            console_log: &console,
            monitor_socket: &monitor,
            extra: &job.qemu_args,
        });
        let binary = settings.qemu_binary_for(job.arch, job.qemu_binary.as_deref());
        let mut qemu = QemuProcess::spawn(binary, args, &path("qemu.log"))
            .map_err(|error| boot_error(DiskImageError::Spawn(error)))?;
        let deadline = Instant::now() + settings.boot_timeout;
        let last_output = Arc::new(Mutex::new(Instant::now()));
        let mut streams = Vec::new();
        for (socket, stream) in [(&stdout, Stream::Stdout), (&stderr, Stream::Stderr)] {
            let connection = qemu
                .connect(socket, deadline)
                .map_err(|error| boot_error(DiskImageError::Connect(error)))?;
            streams.push(relay(connection, setup, id, stream, output, &last_output));
        }
        let agent = Agent::connect(&agent_socket, deadline, || match qemu.exit_status() {
            Some(status) => Err(status),
            None => Ok(()),
        });
        let agent = match agent {
            Ok(agent) => agent,
            Err(error) => {
                let logs = VmLogs::new(qemu.stderr(), &read_console(&console));
                let error = match error {
                    AgentError::NotReady | AgentError::Wire(WireError::Timeout { .. }) => {
                        DiskImageError::AgentSilent {
                            timeout: settings.boot_timeout,
                            logs,
                        }
                    }
                    AgentError::Died(status) => DiskImageError::Exited {
                        status: status.to_string(),
                        logs,
                    },
                    AgentError::Wire(error) => DiskImageError::Agent { error, logs },
                };
                return Err(boot_error(error));
            }
        };
        Ok(Session {
            vm,
            monitor: Monitor::connect(&monitor).ok(),
            qemu,
            agent,
            console,
            streams,
            last_output,
            _dir: dir,
        })
    }

    /// Mounts the shared directory, runs the command, waits for its end.
    fn run(&mut self, setup: &RunSetup, id: JobId, job: &ImageJob) -> Outcome {
        let guest_dir = job.shared.as_ref().map(|(_, guest)| guest.clone());
        let script = match script(&job.program, guest_dir.as_deref()) {
            Ok(script) => script,
            Err(error) => return Outcome::SetupFailed(Arc::new(error)),
        };
        if let Some(guest) = &guest_dir {
            let mount = format!(
                "mkdir -p {dir} && mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 {SHARE_TAG} {dir}",
                dir = quoted(&guest.to_string_lossy())
            );
            match self.exec("sh", &["-c".into(), mount]) {
                Ok(Some(ExitStatus::Exited(0))) => {}
                other => {
                    let how = match other {
                        Ok(status) => format!("{status:?}"),
                        Err(Ended::Lost(error)) => error.to_string(),
                        Err(Ended::Unknown) => "no exit status".into(),
                    };
                    let note = format!(
                        "vmtest: cannot mount the shared directory at {} in the image ({how}); \
                         going on without it (does its kernel have 9p?)\n",
                        guest.display()
                    );
                    setup.reporter.report(&Event::Output {
                        job: id,
                        stream: Stream::Stderr,
                        data: note.into_bytes(),
                    });
                }
            }
        }
        let pid = match self.agent.spawn("bash", vec!["-c".into(), script]) {
            Ok(pid) => pid,
            Err(error) => return self.lost(error),
        };
        setup.reporter.report(&Event::JobStarted {
            job: id,
            name: Arc::from(job.name.as_str()),
            vm: self.vm,
        });
        let deadline = job.timeout.map(|timeout| Instant::now() + timeout);
        let status = match self.wait(pid, deadline) {
            Ok(Some(status)) => status,
            // The image is shut down with the command in it.
            Ok(None) => {
                return Outcome::TimedOut {
                    after: job.timeout.unwrap_or_default(),
                }
            }
            Err(Ended::Lost(error)) => return self.lost(error),
            Err(Ended::Unknown) => {
                return Outcome::SetupFailed(Arc::new(SetupError::NoExitStatus {
                    image: job.image.clone(),
                }))
            }
        };
        self.settle();
        Outcome::of(status, None)
    }

    /// Runs `program args` through the agent and waits for it.
    fn exec(&mut self, program: &str, args: &[String]) -> Result<Option<ExitStatus>, Ended> {
        let pid = self.agent.spawn(program, args.to_vec())?;
        self.wait(pid, None)
    }

    /// Waits for the agent's process `pid` to end, or for `deadline`
    /// (`None` then).
    fn wait(&mut self, pid: i64, deadline: Option<Instant>) -> Result<Option<ExitStatus>, Ended> {
        loop {
            let status = self.agent.status(pid)?;
            if status.exited {
                return match (status.signal, status.exitcode) {
                    (Some(signal), _) => Ok(Some(ExitStatus::Signaled(signal as i32))),
                    (None, Some(code)) => Ok(Some(ExitStatus::Exited(code as i32))),
                    (None, None) => Err(Ended::Unknown),
                };
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Ok(None);
            }
            std::thread::sleep(STATUS_EVERY);
        }
    }

    /// The agent stopped answering: the VM is gone or going.
    fn lost(&mut self, error: WireError) -> Outcome {
        let exit = self.qemu.wait_for_exit(Duration::from_secs(2));
        let console = read_console(&self.console);
        let logs = VmLogs::new(self.qemu.stderr(), &console);
        let seen = DeathCause::Connection(std::io::Error::other(error.to_string()));
        let cause = DeathCause::told(exit.map(|status| status.to_string()), &console, seen);
        Outcome::VmDied(Arc::new(VmDeath { cause, logs }))
    }

    /// Waits until the output streams have been quiet for a moment.
    fn settle(&self) {
        let deadline = Instant::now() + OUTPUT_SETTLE_MAX;
        while Instant::now() < deadline {
            let quiet = self.last_output.lock().elapsed();
            if quiet >= OUTPUT_SETTLE {
                return;
            }
            std::thread::sleep(OUTPUT_SETTLE - quiet);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.qemu.stop(self.monitor.take());
        for stream in self.streams.drain(..) {
            let _ = stream.join();
        }
    }
}

/// The script the agent runs: find the output ports, send stdout and
/// stderr there, enter the shared directory, run the program. Without the
/// ports (no virtio console) the agent's own capture is the fallback.
fn script(program: &Program, dir: Option<&Path>) -> Result<String, DiskImageError> {
    let text = |word: &OsStr| {
        word.to_str()
            .map(quoted)
            .ok_or_else(|| DiskImageError::NotText {
                what: format!("{word:?}"),
            })
    };
    let mut script = format!(
        "for port in /sys/class/virtio-ports/*; do\n\
         \x20 case \"$(cat \"$port/name\" 2>/dev/null)\" in\n\
         \x20   {STDOUT_PORT}) exec >\"/dev/${{port##*/}}\" ;;\n\
         \x20   {STDERR_PORT}) exec 2>\"/dev/${{port##*/}}\" ;;\n\
         \x20 esac\n\
         done\n"
    );
    if let Some(dir) = dir {
        script.push_str(&format!("cd {} 2>/dev/null\n", text(dir.as_os_str())?));
    }
    script.push_str("exec");
    for word in std::iter::once(&program.program).chain(&program.args) {
        script.push(' ');
        script.push_str(&text(word)?);
    }
    script.push('\n');
    Ok(script)
}

/// Reads one output port, reporting and keeping what arrives.
fn relay(
    mut connection: UnixStream,
    setup: &RunSetup,
    id: JobId,
    stream: Stream,
    output: &Arc<Mutex<Captured>>,
    last_output: &Arc<Mutex<Instant>>,
) -> std::thread::JoinHandle<()> {
    let reporter = Arc::clone(&setup.reporter);
    let (output, last_output) = (Arc::clone(output), Arc::clone(last_output));
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 64 << 10];
        while let Ok(read) = connection.read(&mut buffer) {
            if read == 0 {
                break;
            }
            *last_output.lock() = Instant::now();
            output.lock().push(&buffer[..read]);
            reporter.report(&Event::Output {
                job: id,
                stream,
                data: buffer[..read].to_vec(),
            });
        }
    })
}

/// `qcow2` if the file says so, else `raw`.
fn image_format(image: &Path) -> &'static str {
    let mut magic = [0u8; 4];
    let qcow2 = std::fs::File::open(image)
        .and_then(|mut file| file.read_exact(&mut magic))
        .is_ok_and(|()| &magic == b"QFI\xfb");
    if qcow2 {
        "qcow2"
    } else {
        "raw"
    }
}

/// The first UEFI firmware for `arch` installed.
fn default_firmware(arch: Arch) -> Option<PathBuf> {
    arch.uefi_firmware()
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
}

/// Firmware code alone goes in flash; a whole image is `-bios`.
fn firmware(path: &Path) -> Firmware<'_> {
    let name = path.file_name().unwrap_or(OsStr::new(""));
    match name.to_string_lossy().contains("CODE") {
        true => Firmware::Flash(path),
        false => Firmware::Bios(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_redirects_enters_and_quotes() {
        let program = Program {
            program: "bash".into(),
            args: vec!["-c".into(), "echo 'it''s'; exit 3".into()],
            ..Program::default()
        };
        let script = script(&program, Some(Path::new("/mnt/vmtest"))).unwrap();
        assert!(
            script.contains("org.vmtest.stdout) exec >\"/dev/${port##*/}\""),
            "{script}"
        );
        assert!(
            script.contains("cd '/mnt/vmtest' 2>/dev/null\n"),
            "{script}"
        );
        assert!(
            script.ends_with("exec 'bash' '-c' 'echo '\\''it'\\'''\\''s'\\''; exit 3'\n"),
            "{script}"
        );
        let bytes = <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"\xff");
        let not_text = Program {
            program: bytes.into(),
            ..Program::default()
        };
        assert!(matches!(
            super::script(&not_text, None),
            Err(DiskImageError::NotText { .. })
        ));
    }

    #[test]
    fn formats_and_firmware_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (qcow2, raw) = (dir.path().join("a.qcow2"), dir.path().join("b.img"));
        std::fs::write(&qcow2, b"QFI\xfb\0\0\0\x03").unwrap();
        std::fs::write(&raw, b"\0\0\0\0").unwrap();
        assert_eq!((image_format(&qcow2), image_format(&raw)), ("qcow2", "raw"));
        assert!(matches!(
            firmware(Path::new("/x/OVMF_CODE.fd")),
            Firmware::Flash(_)
        ));
        assert!(matches!(
            firmware(Path::new("/x/OVMF.fd")),
            Firmware::Bios(_)
        ));
    }
}
