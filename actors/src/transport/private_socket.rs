//! Binding a unix socket that is never reachable by anyone but root (or its owner), not even
//! for a moment: it is bound under a temporary name, made 0600, then renamed into place.
//! Binding at the final path and then changing its mode would leave a window in which the
//! socket exists with the umask's mode, and any local user could send it requests.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Binds `bind` at `path` with mode 0600. A stale socket at `path` is replaced; anything
/// else there is an error.
pub fn bind_private<S>(path: &Path, bind: impl FnOnce(&Path) -> io::Result<S>) -> io::Result<S> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
    }
    let staging = staging_path(path);
    let _ = std::fs::remove_file(&staging);
    let socket = bind(&staging)?;
    let placed = std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&staging, path));
    if let Err(error) = placed {
        let _ = std::fs::remove_file(&staging);
        return Err(error);
    }
    Ok(socket)
}

/// A sibling of `path` that no other process picks.
fn staging_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}.binding", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn the_socket_appears_only_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let seen = bind_private(&path, |staging| {
            let socket = UnixDatagram::bind(staging)?;
            // At bind time the final path does not exist yet.
            assert!(!path.exists());
            Ok(socket)
        })
        .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // The renamed socket still receives.
        UnixDatagram::unbound().unwrap().send_to(b"x", &path).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(seen.recv(&mut buf).unwrap(), 1);
        // A stale socket is replaced; a regular file is not.
        drop(seen);
        bind_private(&path, |p| UnixDatagram::bind(p)).unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert!(bind_private(&file, |p| UnixDatagram::bind(p)).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no staging file left");
    }
}
