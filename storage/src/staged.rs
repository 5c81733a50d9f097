//! Atomic file output: write beside the destination, sync, rename. A crash or an error leaves
//! the old file or nothing — never a partial archive.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::{Error, Result};

/// A file written beside its destination and renamed over it only when complete; removed if
/// dropped uncommitted, so a failure never leaves a partial archive behind.
pub struct StagedFile {
    tmp: PathBuf,
    dest: PathBuf,
    file: File,
    committed: bool,
}

impl StagedFile {
    /// Opens a fresh temporary file beside `dest`.
    ///
    /// # Errors
    /// The directory is not writable.
    pub fn create(dest: &Path) -> Result<Self> {
        let dir = dest
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.partial-{}", Uuid::new_v4().simple()));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        Ok(Self {
            tmp,
            dest: dest.to_owned(),
            file,
            committed: false,
        })
    }

    /// The file to write to.
    #[must_use]
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Syncs the file, renames it over the destination and syncs the directory.
    ///
    /// # Errors
    /// Sync or rename failed; the temporary file is removed.
    pub fn commit(mut self) -> Result<()> {
        self.file.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        if let Some(dir) = self.dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(dir, e))?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}
