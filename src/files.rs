//! What the folder store and the rest of the server's own files share: an error that names the
//! path and what was being done to it, and running blocking file work off the async
//! workers.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("a file-system task panicked: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl FsError {
    /// What kind of failure it was, for `storage_failures{backend="fs",kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            FsError::Io { source, .. } => match source.kind() {
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => "no_space",
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                    "permission_denied"
                }
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => "not_found",
                _ => "io",
            },
            FsError::Task(_) => "panic",
        }
    }
}

/// Names what failed: `fs::read(&path).at("read", &path)`.
pub trait IoContext<T> {
    fn at(self, action: &'static str, path: &Path) -> Result<T, FsError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, action: &'static str, path: &Path) -> Result<T, FsError> {
        self.map_err(|source| FsError::Io {
            action,
            path: path.to_owned(),
            source,
        })
    }
}

/// Runs blocking file work off the async workers.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FsError> + Send + 'static,
) -> Result<T, FsError> {
    tokio::task::spawn_blocking(work).await?
}

/// Replaces `path` with `contents` atomically: readers see the old file or the new one.
pub fn write_file_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    temp.write_all(contents)?;
    temp.persist(path)?;
    Ok(())
}
