//! What a VM of one shape gets beyond its kernel: the host directories QEMU
//! exports over 9p, and the boot parameters the guest init reads (what to
//! mount where, and which test server to start).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::coverage::{self, Profiles};
use crate::media;
use crate::model::arch::Arch;
use crate::model::job::GuestServer;
use crate::model::shape::VmShape;
use crate::qemu::command::Export;
use vmtest_contract::boot::{
    under, BootParams, ServerCommand, Share, GUEST_TMP, SERVER_VAR, SHARE_TAG_PREFIX,
};
use vmtest_contract::SHARED_DIR_VAR;

/// Where a guest whose root is not the host's sees the host's root, to run
/// the test server from it.
const HOST_VIEW: &str = "/run/vmtest/host";
const HOST_VIEW_TAG: &str = "vmtest_host";

/// The exports of a VM and its init's parameters.
pub(crate) struct Layout {
    pub exports: Vec<Export>,
    pub params: BootParams,
    /// Where the guest's coverage profiles go, when the server writes any.
    pub profiles: Option<Profiles>,
}

/// The layout of a VM of `shape`, whose test server is `server`, in a run
/// whose shared directory is `shared_dir`; `vm_tag` names this VM apart
/// from every other, of this run and of others, and `vm_dir` is its own
/// directory.
pub(crate) fn layout(
    shape: &VmShape,
    server: &GuestServer,
    shared_dir: &Path,
    vm_tag: &str,
    vm_dir: &Path,
) -> Layout {
    let host_root = shape.root == Path::new("/");
    let mut exports = Vec::new();
    let mut shares = Vec::new();
    let mut export = |host_path: &Path, guest_path: &Path, writable: bool| {
        let tag = format!("{SHARE_TAG_PREFIX}{}", exports.len());
        exports.push(Export {
            tag: tag.clone(),
            host_path: host_path.to_path_buf(),
            writable,
        });
        shares.push(Share {
            tag,
            guest_path: guest_path.to_path_buf(),
            writable,
        });
    };
    // The run's shared directory, at its own path: only the host's root has it.
    if host_root {
        export(shared_dir, shared_dir, true);
    }
    for mount in &shape.mounts {
        export(&mount.host_path, &mount.guest_path, mount.writable);
    }
    // Made here, or the profiles are not written, and the runtime says so
    // in the output.
    let profiles = coverage::profiles(&server.program, &server.env, &server.cwd, vm_tag, vm_dir)
        .filter(|profiles| std::fs::create_dir_all(&profiles.written).is_ok());
    if let Some(profiles) = &profiles {
        export(&profiles.written, Path::new(coverage::GUEST_DIR), true);
    }
    let env = server_env(
        &server.env,
        host_root.then_some(shared_dir),
        profiles
            .as_ref()
            .map(|profiles| profiles.guest_pattern.as_path()),
    );
    let command = if host_root {
        ServerCommand {
            program: server.program.clone(),
            args: server.args.clone(),
            env: Vec::new(),
            cwd: server.cwd.clone(),
        }
    } else {
        exports.push(Export {
            tag: HOST_VIEW_TAG.into(),
            host_path: "/".into(),
            writable: false,
        });
        shares.push(Share {
            tag: HOST_VIEW_TAG.into(),
            guest_path: HOST_VIEW.into(),
            writable: false,
        });
        from_host_view(server)
    };
    // What the server reads from the host's root. (Shares are mounted over
    // the guest's own `/tmp`, anywhere in it.)
    let tmp_binds = match host_root {
        true => tmp_binds([command.program.as_path(), command.cwd.as_path()]),
        false => Vec::new(),
    };
    // A root not the host's (another distribution, another architecture's)
    // may lack the directories shares go on: the guest then makes them in
    // an overlay. (Under /mnt, /tmp and /run, the init makes them anyway.)
    let overlay = !host_root
        && shares.iter().any(|share| {
            let made_anyway = ["/mnt", "/tmp", "/run"]
                .iter()
                .any(|dir| share.guest_path.starts_with(dir));
            !made_anyway && !under(&shape.root, &share.guest_path).is_dir()
        });
    Layout {
        exports,
        params: BootParams {
            tmp_binds,
            shares,
            overlay,
            server: ServerCommand { env, ..command },
            // The VM sets them when it sends the line.
            clock_ns: 0,
            seed: Vec::new(),
        },
        profiles,
    }
}

/// The server's environment: the host's, without what would mislead the
/// guest, with what the guest side reads.
fn server_env(
    host: &[OsString],
    shared_dir: Option<&Path>,
    profiles: Option<&Path>,
) -> Vec<OsString> {
    let ours = [SERVER_VAR, "TMPDIR", SHARED_DIR_VAR, coverage::PROFILE_VAR];
    let mut env: Vec<OsString> = host
        .iter()
        .filter(|var| {
            let key = var
                .as_bytes()
                .split(|&byte| byte == b'=')
                .next()
                .unwrap_or_default();
            !ours.iter().any(|ours| ours.as_bytes() == key)
        })
        .cloned()
        .collect();
    env.push(format!("{SERVER_VAR}=1").into());
    // The host's TMPDIR may not exist in the guest, whose /tmp is its own.
    env.push(format!("TMPDIR={GUEST_TMP}").into());
    let mut set = |key: &str, value: &Path| {
        let mut var = OsString::from(format!("{key}="));
        var.push(value);
        env.push(var);
    };
    if let Some(dir) = shared_dir {
        set(SHARED_DIR_VAR, dir);
    }
    if let Some(pattern) = profiles {
        set(coverage::PROFILE_VAR, pattern);
    }
    env
}

/// The server run from the host's root, seen at [`HOST_VIEW`] in a guest
/// with another root: through the host's own dynamic loader and libraries,
/// which the guest's root may lack. It starts in `/`.
fn from_host_view(server: &GuestServer) -> ServerCommand {
    // Resolved on the host: an absolute symlink in the view would point
    // into the guest's root (`/lib64/ld-linux-x86-64.so.2` is one).
    let in_view = |path: &Path| {
        let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        Path::new(HOST_VIEW).join(path.strip_prefix("/").unwrap_or(&path))
    };
    let binary = in_view(&server.program);
    let (program, mut args) = match media::interpreter(&server.program) {
        Some(loader) => {
            let dirs: Vec<String> = Arch::HOST
                .library_dirs()
                .iter()
                .filter(|dir| Path::new(dir).is_dir())
                .map(|dir| in_view(Path::new(dir)).to_string_lossy().into_owned())
                .collect();
            let args = vec![
                OsString::from("--library-path"),
                OsString::from(dirs.join(":")),
                binary.into_os_string(),
            ];
            (in_view(&loader), args)
        }
        // A static binary runs as it is.
        None => (binary, Vec::new()),
    };
    args.extend(server.args.iter().cloned());
    ServerCommand {
        program,
        args,
        env: Vec::new(),
        cwd: "/".into(),
    }
}

/// For each path under the host's `/tmp`, the entry of `/tmp` it is in,
/// once: binding those makes the paths visible in the guest's own `/tmp`.
fn tmp_binds<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Vec<PathBuf> {
    let tmp = Path::new(GUEST_TMP);
    let mut binds: Vec<PathBuf> = Vec::new();
    for path in paths {
        let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let Some(first) = path
            .strip_prefix(tmp)
            .ok()
            .and_then(|rest| rest.iter().next())
        else {
            continue;
        };
        let bind = tmp.join(first);
        if !binds.contains(&bind) {
            binds.push(bind);
        }
    }
    binds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::shape::Mount;

    fn server(program: &str) -> GuestServer {
        GuestServer {
            program: program.into(),
            args: Vec::new(),
            env: vec![
                "HOME=/root".into(),
                "TMPDIR=/tmp/host-only".into(),
                format!("{SERVER_VAR}=0").into(),
            ],
            cwd: "/home/u/c".into(),
        }
    }

    #[test]
    fn paths_under_tmp_are_bound_by_their_first_component() {
        let binds = tmp_binds([
            Path::new("/tmp/x/target/debug/deps/kernels-1"),
            Path::new("/tmp/x/examples/basics"),
            Path::new("/home/u/crate"),
            Path::new("/tmp/y"),
            Path::new("/tmp"),
        ]);
        assert_eq!(binds, [PathBuf::from("/tmp/x"), PathBuf::from("/tmp/y")]);
    }

    #[test]
    fn on_the_host_root_the_server_runs_as_it_is_with_the_guest_side_variables() {
        let shared = Path::new("/home/u/c/target/vmtest/shared/run-1-a");
        let mut shape = VmShape::new("/k");
        shape.mounts.push(Mount {
            guest_path: "/mnt/vmtest".into(),
            host_path: "/tmp/c/config".into(),
            writable: true,
        });
        let layout = layout(
            &shape,
            &server("/tmp/c/target/debug/deps/kernels-1"),
            shared,
            "vm",
            Path::new("/run/vm-1"),
        );
        let env: Vec<String> = layout
            .params
            .server
            .env
            .iter()
            .map(|var| var.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            env,
            [
                "HOME=/root".to_string(),
                format!("{SERVER_VAR}=1"),
                "TMPDIR=/tmp".into(),
                format!("{SHARED_DIR_VAR}={}", shared.display()),
            ]
        );
        assert_eq!(layout.params.tmp_binds, [PathBuf::from("/tmp/c")]);
        let guest_paths: Vec<&Path> = layout
            .params
            .shares
            .iter()
            .map(|share| share.guest_path.as_path())
            .collect();
        assert_eq!(guest_paths, [shared, Path::new("/mnt/vmtest")]);
        assert_eq!(layout.exports[1].host_path, Path::new("/tmp/c/config"));
        assert_eq!(layout.exports[1].tag, layout.params.shares[1].tag);
    }

    #[test]
    fn on_another_root_the_server_runs_from_the_host_view_with_the_host_loader() {
        let mut shape = VmShape::new("/k");
        shape.root = "/srv/rootfs".into();
        let exe = std::env::current_exe().unwrap();
        let layout = layout(
            &shape,
            &server(exe.to_str().unwrap()),
            Path::new("/shared"),
            "vm",
            Path::new("/run/vm-1"),
        );
        let command = &layout.params.server;
        assert!(command.program.starts_with(HOST_VIEW), "{command:?}");
        assert!(
            command.program.to_string_lossy().contains("ld-linux"),
            "{command:?}"
        );
        assert_eq!(command.args[0], "--library-path");
        assert_eq!(
            Path::new(&command.args[2]),
            Path::new(HOST_VIEW).join(exe.strip_prefix("/").unwrap())
        );
        assert_eq!(command.cwd, Path::new("/"));
        assert!(layout.params.tmp_binds.is_empty());
        let last = layout.exports.last().unwrap();
        assert_eq!(
            (last.host_path.as_path(), last.writable),
            (Path::new("/"), false)
        );
        assert!(!command
            .env
            .iter()
            .any(|var| var.to_string_lossy().starts_with(SHARED_DIR_VAR)));
    }
}
