//! The guest side of vmtest: what runs inside its VMs.
//!
//! - [`INIT`]: the guest's PID 1, a static binary compiled from
//!   `init/init.rs` by the build script. It loads the kernel's modules,
//!   hands over to the host at the handshake (`vmtest_contract::boot`),
//!   mounts the host's root and starts the test server.
//! - The test server: the front door's own binary (the test binary, or the
//!   `vmtest` command), started by the init with
//!   [`SERVER_VAR`](vmtest_contract::boot::SERVER_VAR) set. Its `main` calls
//!   [`serve_if_requested`] first, which turns the process into the server:
//!   it reads requests on the control port, runs each job in a child of its
//!   own (forked without exec for a test, exec'd for a program), streams the
//!   job's output, watches the kernel's log, and reports how each job ended.
//!
//! It knows the host only through `vmtest-contract`.

mod cgroup;
mod fd;
mod job;
mod kmsg;
mod server;

use vmtest_contract::boot::SERVER_VAR;
use vmtest_contract::messages::Verdict;

/// The guest's PID 1, for the initramfs.
pub static INIT: &[u8] = &INIT_SECTION;

/// The init's bytes, also in a section of their own ([`INIT_SECTION_NAME`]),
/// where a host of another architecture finds them in a build of this
/// crate for the guest's (`vmtest --arch`).
#[used]
#[link_section = ".vmtest_init"]
static INIT_SECTION: [u8; INIT_LEN] = *include_bytes!(concat!(env!("OUT_DIR"), "/vmtest-init"));
const INIT_LEN: usize = include_bytes!(concat!(env!("OUT_DIR"), "/vmtest-init")).len();

/// The section of a binary linking this crate that holds its [`INIT`].
pub const INIT_SECTION_NAME: &str = ".vmtest_init";

/// The contract this guest speaks ([`vmtest_contract::DIGEST`], little
/// endian), in a section of its own: a host of another architecture
/// checks it before using a build of this crate for its guests.
#[used]
#[link_section = ".vmtest_contract"]
static CONTRACT_SECTION: [u8; 8] = vmtest_contract::DIGEST.to_le_bytes();

/// The section of a binary linking this crate that holds its contract's
/// digest.
pub const CONTRACT_SECTION_NAME: &str = ".vmtest_contract";

/// Runs the test with the given path in the current process (a child forked
/// from the server) and says how it went.
pub type TestRunner = fn(&str) -> Verdict;

/// If the guest init started this process as the test server, serves jobs
/// until the host hangs up, then exits; otherwise returns at once.
///
/// `tests` runs the `#[vmtest]`s the host asks for by name; without it,
/// such requests fail (the `vmtest` command runs only programs).
pub fn serve_if_requested(tests: Option<TestRunner>) {
    if std::env::var_os(SERVER_VAR).is_some() {
        // The server is single-threaded here (nothing has started a thread
        // before `main` called us), so changing the environment is sound.
        std::env::remove_var(SERVER_VAR);
        server::serve(tests)
    }
}

#[cfg(test)]
mod tests {
    use object::read::elf::{ElfFile64, ProgramHeader};
    use object::Object;

    #[test]
    fn the_init_is_a_static_binary() {
        let init = ElfFile64::<object::Endianness>::parse(super::INIT).unwrap();
        // No dynamic loader: in the initramfs there is none. (Program
        // headers: `object`'s segments have no names.)
        let needs_a_loader = init
            .elf_program_headers()
            .iter()
            .any(|header| header.p_type(init.endian()) == object::elf::PT_INTERP);
        assert!(!needs_a_loader);
        assert!(init.imports().unwrap().is_empty(), "{:?}", init.imports());
    }

    #[test]
    fn the_init_is_in_its_own_section_of_this_binary() {
        use object::ObjectSection;
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let binary = object::File::parse(&*exe).unwrap();
        let section = binary.section_by_name(super::INIT_SECTION_NAME).unwrap();
        assert_eq!(section.data().unwrap(), super::INIT);
    }
}
