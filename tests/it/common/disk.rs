//! A small private tmpfs, for the disk-full tests.

use std::path::PathBuf;

use tempfile::TempDir;

/// A small tmpfs at a temporary folder, mounted in a mount namespace of the calling thread's
/// own: nothing outside the test sees it, and it vanishes with the test. Create it before
/// the test's runtime, whose threads then inherit the namespace. Needs root (CAP_SYS_ADMIN),
/// as CI has: elsewhere [`SmallDisk::mount`] says why it cannot, for the test to skip.
pub struct SmallDisk {
    pub path: PathBuf,
    _dir: TempDir,
}

impl SmallDisk {
    /// The mounted disk, or why this process may not mount one.
    pub fn mount(bytes: u64) -> Result<Self, String> {
        use rustix::mount::{MountFlags, MountPropagationFlags};
        let denied = |step: &str, error: rustix::io::Errno| {
            format!(
                "cannot {step} for a small tmpfs ({}; it needs root, CAP_SYS_ADMIN)",
                std::io::Error::from(error)
            )
        };
        let dir = tempfile::tempdir().expect("temporary folder");
        // SAFETY: NEWNS unshares the mount namespace (and the file-system attributes) of
        // this thread only; no file descriptor table is unshared.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
            .map_err(|error| denied("enter a private mount namespace", error))?;
        rustix::mount::mount_change(
            "/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )
        .map_err(|error| denied("make mounts private", error))?;
        let options = std::ffi::CString::new(format!("size={bytes}")).unwrap();
        rustix::mount::mount(
            "tmpfs",
            dir.path(),
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            options.as_c_str(),
        )
        .map_err(|error| denied("mount", error))?;
        Ok(SmallDisk {
            path: dir.path().to_owned(),
            _dir: dir,
        })
    }

    /// Fills the file system with a ballast file until at most `left` bytes are free.
    pub fn fill(&self, left: u64) -> PathBuf {
        let stat = rustix::fs::statvfs(&self.path).unwrap();
        let free = stat.f_bavail * stat.f_frsize;
        let ballast = self.path.join("ballast");
        let size = free.saturating_sub(left);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&ballast)
            .unwrap();
        // tmpfs allocates pages as they are written, so write rather than set_len.
        let chunk = vec![0xa5u8; 64 * 1024];
        let mut written = 0;
        let mut file = file;
        while written < size {
            let n = chunk.len().min((size - written) as usize);
            match std::io::Write::write(&mut file, &chunk[..n]) {
                Ok(n) => written += n as u64,
                Err(_) => break, // full already
            }
        }
        ballast
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.path, rustix::mount::UnmountFlags::DETACH);
    }
}
