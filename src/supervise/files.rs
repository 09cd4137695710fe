//! `--reload`: which of the application's files changed, told by inotify.
//!
//! Each watched file's *directory* is watched, not the file: editors save by writing a new
//! file and renaming it over the old one, which would silently end a watch on the file's
//! inode. Events in a directory are matched against the file names wanted there.
//!
//! The descriptor is non-blocking; the master puts [`FileWatch::fileno`] in its `select()`
//! and calls [`FileWatch::changed`] when it is readable, so no thread is started.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use inotify::{Inotify, WatchDescriptor, WatchMask};
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

/// Events that mean "the file now has other contents": written and closed, renamed or
/// created over, removed, or touched (`touch` changes only its times).
const MASK: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::ONLYDIR);

/// The file names wanted in one watched directory.
struct Dir {
    path: PathBuf,
    names: BTreeSet<OsString>,
}

/// The watch set, independent of Python (unit-tested below).
pub struct Files {
    inotify: Inotify,
    dirs: HashMap<WatchDescriptor, Dir>,
    buffer: Vec<u8>,
}

impl Files {
    pub fn new() -> io::Result<Files> {
        Ok(Files {
            inotify: Inotify::init()?,
            dirs: HashMap::new(),
            buffer: vec![0; 16 * 1024],
        })
    }

    /// Watch `file` (absolute or relative to the current directory). A file that does not
    /// exist yet is fine as long as its directory does: creating it counts as a change.
    pub fn add(&mut self, file: &Path) -> io::Result<()> {
        let file = std::path::absolute(file)?;
        let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a file path",
            ));
        };
        let wd = self.inotify.watches().add(dir, MASK)?;
        self.dirs
            .entry(wd)
            .or_insert_with(|| Dir {
                path: dir.to_path_buf(),
                names: BTreeSet::new(),
            })
            .names
            .insert(name.to_os_string());
        Ok(())
    }

    /// How many files are watched.
    pub fn len(&self) -> usize {
        self.dirs.values().map(|d| d.names.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// Drain the pending events; the watched files they name, each once, sorted.
    pub fn changed(&mut self) -> io::Result<Vec<PathBuf>> {
        let mut found = BTreeSet::new();
        loop {
            let events = match self.inotify.read_events(&mut self.buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            };
            let mut any = false;
            for event in events {
                any = true;
                let (Some(dir), Some(name)) = (self.dirs.get(&event.wd), event.name) else {
                    continue;
                };
                if dir.names.contains(name) {
                    found.insert(dir.path.join(name));
                }
            }
            if !any {
                break;
            }
        }
        Ok(found.into_iter().collect())
    }

    pub fn fd(&self) -> i32 {
        self.inotify.as_raw_fd()
    }
}

/// `ferrule._ferrule.FileWatch`: the Python face of [`Files`].
#[pyclass(module = "ferrule._ferrule")]
pub struct FileWatch {
    files: Files,
}

fn os_error(e: io::Error) -> PyErr {
    PyOSError::new_err(e.to_string())
}

#[pymethods]
impl FileWatch {
    #[new]
    fn new() -> PyResult<FileWatch> {
        Ok(FileWatch {
            files: Files::new().map_err(os_error)?,
        })
    }

    /// Watch more files; paths already watched are ignored.
    fn add(&mut self, paths: Vec<PathBuf>) -> PyResult<()> {
        for path in paths {
            self.files
                .add(&path)
                .map_err(|e| PyOSError::new_err(format!("cannot watch {}: {e}", path.display())))?;
        }
        Ok(())
    }

    /// The watched files changed since the last call (never blocks).
    fn changed(&mut self) -> PyResult<Vec<OsString>> {
        let found = self.files.changed().map_err(os_error)?;
        Ok(found.into_iter().map(PathBuf::into_os_string).collect())
    }

    /// The inotify descriptor, to wait on with `select()`.
    fn fileno(&self) -> i32 {
        self.files.fd()
    }

    fn __len__(&self) -> usize {
        self.files.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ferrule-files-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reports_written_renamed_and_created_files_only_when_watched() {
        let dir = tempdir("kinds");
        let app = dir.join("app.py");
        let later = dir.join("later.py");
        fs::write(&app, "one").unwrap();
        let mut files = Files::new().unwrap();
        files.add(&app).unwrap();
        files.add(&later).unwrap();
        files.add(&app).unwrap();
        assert_eq!(files.len(), 2);
        assert!(files.changed().unwrap().is_empty());

        fs::write(dir.join("other.py"), "x").unwrap();
        assert!(
            files.changed().unwrap().is_empty(),
            "an unwatched neighbour"
        );

        fs::write(&app, "two").unwrap();
        assert_eq!(files.changed().unwrap(), vec![app.clone()]);

        // An editor's save: write a temporary file, rename it over the original.
        let tmp = dir.join(".app.py.swp");
        fs::write(&tmp, "three").unwrap();
        fs::rename(&tmp, &app).unwrap();
        assert_eq!(files.changed().unwrap(), vec![app.clone()]);
        // The watch survives the rename (it is on the directory).
        fs::write(&app, "four").unwrap();
        assert_eq!(files.changed().unwrap(), vec![app.clone()]);

        fs::write(&later, "new").unwrap();
        fs::remove_file(&app).unwrap();
        assert_eq!(files.changed().unwrap(), vec![app, later]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let mut files = Files::new().unwrap();
        let err = files.add(Path::new("/nonexistent-ferrule-dir/app.py"));
        assert!(err.is_err());
        assert!(files.is_empty());
    }
}
