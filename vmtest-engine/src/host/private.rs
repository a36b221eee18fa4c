//! Directories only their owner can write. vmtest trusts what it finds in
//! its directories (snapshots it restores, records that name kernels, the
//! run's shared directory), so each one it creates is `0700`, and one that
//! exists already is used only if this user owns it, nobody else may write
//! to it, and it is no symbolic link (which would let whoever made it choose
//! where vmtest writes).

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Why a directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivateDirError {
    #[error("cannot create the directory {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is a symbolic link: vmtest does not follow one to its own directories (whoever \
         made it chooses where vmtest writes); remove it, or point {setting} elsewhere"
    )]
    Symlink {
        path: PathBuf,
        setting: &'static str,
    },
    #[error("{path} is not a directory: remove it, or point {setting} elsewhere")]
    NotDirectory {
        path: PathBuf,
        setting: &'static str,
    },
    #[error(
        "{path} belongs to {owner}, not to you ({me}): vmtest would trust what they put there; \
         remove it, or point {setting} elsewhere"
    )]
    Foreign {
        path: PathBuf,
        owner: String,
        me: String,
        setting: &'static str,
    },
    #[error(
        "{path} can be written by other users (mode {mode:o}): vmtest would trust what they put \
         there; run `chmod go-w {path}`, or point {setting} elsewhere"
    )]
    Writable {
        path: PathBuf,
        mode: u32,
        setting: &'static str,
    },
}

/// Makes `path` (and its missing parents) a `0700` directory, or checks
/// that the directory there is this user's alone. `setting` names what
/// chose the place, for the message.
pub(crate) fn ensure(path: &Path, setting: &'static str) -> Result<(), PrivateDirError> {
    let metadata = match fs::symlink_metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let created = DirBuilder::new().recursive(true).mode(0o700).create(path);
            created.and_then(|()| fs::symlink_metadata(path))
        }
        found => found,
    }
    .map_err(|source| PrivateDirError::Create {
        path: path.to_path_buf(),
        source,
    })?;
    check(
        path,
        &metadata,
        rustix::process::geteuid().as_raw(),
        setting,
    )
}

fn check(
    path: &Path,
    metadata: &fs::Metadata,
    me: u32,
    setting: &'static str,
) -> Result<(), PrivateDirError> {
    let path = path.to_path_buf();
    if metadata.file_type().is_symlink() {
        return Err(PrivateDirError::Symlink { path, setting });
    }
    if !metadata.is_dir() {
        return Err(PrivateDirError::NotDirectory { path, setting });
    }
    if metadata.uid() != me {
        return Err(PrivateDirError::Foreign {
            path,
            owner: user_name(metadata.uid()),
            me: user_name(me),
            setting,
        });
    }
    let mode = metadata.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(PrivateDirError::Writable {
            path,
            mode,
            setting,
        });
    }
    Ok(())
}

/// `name (uid N)`, or `uid N` for a user `/etc/passwd` does not list.
fn user_name(uid: u32) -> String {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.get(2) == Some(&uid.to_string().as_str()))
        .and_then(|fields| fields.first().map(|name| format!("{name} (uid {uid})")))
        .unwrap_or_else(|| format!("uid {uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_directory_is_made_private_with_its_parents() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("a/b/cache");
        ensure(&path, "VMTEST_CACHE_DIR").unwrap();
        for dir in [root.path().join("a"), path.clone()] {
            let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", dir.display());
        }
        // Ours and private: used as it is, again.
        ensure(&path, "VMTEST_CACHE_DIR").unwrap();
    }

    #[test]
    fn links_files_and_directories_others_may_write_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let elsewhere = root.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let error = ensure(&link, "VMTEST_CACHE_DIR").unwrap_err();
        assert!(matches!(error, PrivateDirError::Symlink { .. }), "{error}");
        assert!(error.to_string().contains("VMTEST_CACHE_DIR"), "{error}");

        let file = root.path().join("file");
        fs::write(&file, "").unwrap();
        let error = ensure(&file, "TMPDIR").unwrap_err();
        assert!(
            matches!(error, PrivateDirError::NotDirectory { .. }),
            "{error}"
        );

        fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o1777)).unwrap();
        let error = ensure(&elsewhere, "XDG_CACHE_HOME").unwrap_err();
        assert!(
            error.to_string().contains("mode 1777") && error.to_string().contains("chmod go-w"),
            "{error}"
        );
    }

    #[test]
    fn a_directory_of_another_user_is_refused_with_its_owner() {
        let root = tempfile::tempdir().unwrap();
        let metadata = fs::symlink_metadata(root.path()).unwrap();
        let error = check(
            root.path(),
            &metadata,
            metadata.uid() + 1,
            "VMTEST_CACHE_DIR",
        )
        .unwrap_err();
        let PrivateDirError::Foreign { owner, .. } = &error else {
            panic!("{error}")
        };
        assert!(
            owner.contains(&format!("uid {}", metadata.uid())),
            "{error}"
        );
    }
}
