//! Who owns an agent's workspace: the identity the host's file work in it
//! runs under (`fs_guard.rs`) and the sandbox container runs as
//! (`docker.rs`), so that files are born with the right owner and nothing
//! is ever chowned after the fact.
//!
//! The rule: a workspace owned by a user is worked on as that user. A
//! workspace owned by root is worked on as root, except one the kernel made
//! itself — a directory beneath `$AOS_HOME/workspaces` — which, when the
//! kernel runs as root and a sandbox backend names its user, is given to
//! that user once, before any driver touches it: only that directory, through
//! a descriptor opened beneath `$AOS_HOME/workspaces` with `openat2(2)`
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` and `O_NOFOLLOW` (so no symlink or
//! `..` planted anywhere can redirect it), then `fchown` on that descriptor.
//! Nothing inside a workspace is ever chowned, and no other workspace (an
//! operator-named directory) is ever changed.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

/// Whether the kernel runs as root (and so could act beyond a user's rights).
pub(crate) fn kernel_is_root() -> bool {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The uid/gid host file work in `workspace` runs with (`None`: the
/// kernel's own). Adopts a kernel-made workspace for `sandbox_user` first
/// (see the module docs). Errors are logged, never fatal: the worst case is
/// a workspace worked on as root, as before.
pub(crate) fn prepare(workspaces_root: &Path, workspace: &Path, sandbox_user: Option<(u32, u32)>) -> Option<(u32, u32)> {
    if !kernel_is_root() {
        return None;
    }
    let md = std::fs::metadata(workspace).ok()?;
    if md.uid() != 0 {
        return Some((md.uid(), md.gid()));
    }
    let user = sandbox_user.filter(|(uid, _)| *uid != 0)?;
    match adopt(workspaces_root, workspace, user) {
        Ok(true) => {
            tracing::debug!(target: "aos::workspace", workspace = %workspace.display(), uid = user.0, "workspace given to the sandbox user");
            Some(user)
        }
        Ok(false) => None,
        Err(e) => {
            tracing::warn!(target: "aos::workspace", workspace = %workspace.display(), "cannot give the workspace to the sandbox user: {e}");
            None
        }
    }
}

/// Gives `workspace` (only the directory itself) to `user` if it is a
/// root-owned directory strictly beneath `root`. Returns whether it did.
pub(crate) fn adopt(root: &Path, workspace: &Path, user: (u32, u32)) -> io::Result<bool> {
    let Ok(rel) = workspace.strip_prefix(root) else { return Ok(false) };
    if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Ok(false);
    }
    let root_fd = open_dir(libc::AT_FDCWD, root, false)?;
    let fd = open_dir(root_fd.as_raw_fd(), rel, true)?;
    // SAFETY: `st` is plain data filled by fstat on a descriptor we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if st.st_uid != 0 || st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Ok(false);
    }
    // SAFETY: fchown on a descriptor we own.
    if unsafe { libc::fchown(fd.as_raw_fd(), user.0, user.1) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

/// Opens directory `path` relative to `dirfd`; with `beneath`, without
/// following any symlink and without leaving `dirfd` (`openat2`, or one
/// component at a time with `O_NOFOLLOW` on kernels without it).
fn open_dir(dirfd: libc::c_int, path: &Path, beneath: bool) -> io::Result<OwnedFd> {
    let flags = libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_RDONLY;
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    if !beneath {
        // SAFETY: a valid C string; the result is checked.
        let fd = unsafe { libc::openat(dirfd, c(path)?.as_ptr(), flags & !libc::O_NOFOLLOW) };
        return owned(fd);
    }
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_XDEV;
    let cpath = c(path)?;
    // SAFETY: openat2 with a valid path and a correctly sized `open_how`.
    let fd = unsafe {
        libc::syscall(libc::SYS_openat2, dirfd, cpath.as_ptr(), &how as *const libc::open_how, std::mem::size_of::<libc::open_how>())
    } as libc::c_int;
    if fd >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS) {
        return owned(fd);
    }
    // No openat2 (Linux < 5.6): one normal component at a time, never following.
    let mut cur: Option<OwnedFd> = None;
    for comp in path.components() {
        let Component::Normal(name) = comp else { return Err(io::Error::from(io::ErrorKind::InvalidInput)) };
        let at = cur.as_ref().map_or(dirfd, |f| f.as_raw_fd());
        // SAFETY: as above.
        let fd = unsafe { libc::openat(at, c(Path::new(name))?.as_ptr(), flags) };
        cur = Some(owned(fd)?);
    }
    cur.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor returned by the kernel, owned from here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().uid()
    }

    #[test]
    fn only_a_root_owned_directory_beneath_the_root_is_adopted() {
        if !kernel_is_root() {
            eprintln!("not root: adoption never happens; nothing to check");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("workspaces");
        let ws = root.join("7");
        std::fs::create_dir_all(ws.join("inner")).unwrap();
        std::fs::write(ws.join("inner/f"), "x").unwrap();
        assert!(adopt(&root, &ws, (1000, 1000)).unwrap());
        assert_eq!(uid(&ws), 1000);
        assert_eq!(uid(&ws.join("inner")), 0, "nothing inside is touched");
        assert_eq!(uid(&ws.join("inner/f")), 0);
        // Already a user's: left alone.
        assert!(!adopt(&root, &ws, (1001, 1001)).unwrap());
        assert_eq!(uid(&ws), 1000);

        // Outside the root, the root itself, `..`: never.
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        assert!(!adopt(&root, &outside, (1000, 1000)).unwrap());
        assert!(!adopt(&root, &root, (1000, 1000)).unwrap());
        assert!(!adopt(&root, &root.join("../outside"), (1000, 1000)).unwrap());
        assert_eq!(uid(&outside), 0);

        // A symlink anywhere on the way is refused, not followed.
        std::os::unix::fs::symlink(&outside, root.join("8")).unwrap();
        assert!(adopt(&root, &root.join("8"), (1000, 1000)).is_err());
        std::fs::create_dir(outside.join("sub")).unwrap();
        assert!(adopt(&root, &root.join("8/sub"), (1000, 1000)).is_err());
        assert_eq!(uid(&outside), 0);
        assert_eq!(uid(&outside.join("sub")), 0);
    }
}
