//! Files on disk: reading with the path in every error, and atomic writes with a chosen mode, so that a
//! crash never leaves a half-written key or certificate under its real name.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use crate::error::CaError;

/// Whether `path` exists (a dangling symlink counts as existing, so it is reported, not replaced).
pub(crate) fn exists(path: &Path) -> Result<bool, CaError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CaError::io("checking", path, e)),
    }
}

pub(crate) fn read(path: &Path) -> Result<String, CaError> {
    let bytes = fs::read(path).map_err(|e| CaError::io("reading", path, e))?;
    String::from_utf8(bytes).map_err(|_| CaError::Certificate {
        path: path.to_path_buf(),
        reason: "not text (PEM files are ASCII)".into(),
    })
}

/// Writes `contents` to a temporary file next to `path` with permissions `mode`, syncs it, and renames
/// it over `path`.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let tmp = write_temp(path, contents, mode)?;
    let result = fs::rename(&tmp, path);
    finish(path, &tmp, result)
}

/// Like [`write_atomic`], but never replaces an existing `path`: fails with `AlreadyExists` instead
/// (another process got there first).
pub(crate) fn create_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let tmp = write_temp(path, contents, mode)?;
    let result = match fs::hard_link(&tmp, path) {
        Ok(()) => fs::remove_file(&tmp),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
        // No hard links on this filesystem: rename, having checked just before.
        Err(_) if !path.exists() => fs::rename(&tmp, path),
        Err(e) => Err(e),
    };
    finish(path, &tmp, result)
}

fn write_temp(path: &Path, contents: &[u8], mode: u32) -> Result<std::path::PathBuf, CaError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = options.open(&tmp)?;
        #[cfg(unix)]
        {
            // `mode` is masked by the umask on creation; set it exactly.
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        file.write_all(contents)?;
        file.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(CaError::io("writing", path, e))
        }
    }
}

fn finish(path: &Path, tmp: &Path, result: std::io::Result<()>) -> Result<(), CaError> {
    match result {
        Ok(()) => {
            if let Ok(d) = fs::File::open(path.parent().unwrap_or(Path::new("."))) {
                let _ = d.sync_all();
            }
            Ok(())
        }
        Err(e) => {
            let _ = fs::remove_file(tmp);
            Err(CaError::io("writing", path, e))
        }
    }
}

/// Creates `dir` (and parents) if needed; a folder created here is private to the owner.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), CaError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| CaError::io("creating the folder", dir, e))
}

/// Permission bits of `path` that let the group or others read it, if any (Unix only).
pub(crate) fn loose_mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_never_replaces_and_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca-key.pem");
        create_atomic(&path, b"first", 0o600).unwrap();
        let err = create_atomic(&path, b"second", 0o600).unwrap_err();
        assert!(
            matches!(&err, CaError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
            "{err}"
        );
        assert_eq!(fs::read(&path).unwrap(), b"first");
        write_atomic(&path, b"third", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"third");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("ca-key.pem")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            assert_eq!(loose_mode(&path), None);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            assert_eq!(loose_mode(&path), Some(0o644));
        }
    }

    #[test]
    fn errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope/ca-key.pem");
        let err = write_atomic(&missing, b"x", 0o600).unwrap_err().to_string();
        assert!(err.contains("nope/ca-key.pem"), "{err}");
        assert!(!exists(&missing).unwrap());
    }
}
