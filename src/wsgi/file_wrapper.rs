//! `wsgi.file_wrapper` (PEP 3333 §Optional Platform-Specific File Handling): an
//! iterable over a file that the server sends with sendfile(2) when it can.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

#[pyclass(module = "ferrule._ferrule")]
pub struct FileWrapper {
    #[pyo3(get)]
    filelike: Py<PyAny>,
    #[pyo3(get)]
    blksize: usize,
}

/// A regular file's descriptor, position and size, for sendfile.
pub struct RealFile {
    pub fd: i32,
    pub offset: i64,
    pub len: u64,
}

impl FileWrapper {
    /// The underlying file as a sendfile source, if it is a regular file with a descriptor.
    pub fn real_file(&self, py: Python<'_>) -> Option<RealFile> {
        let f = self.filelike.bind(py);
        let fd: i32 = f.call_method0("fileno").ok()?.extract().ok()?;
        // SAFETY: fstat into a zeroed struct on the app's descriptor.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } != 0 || (st.st_mode & libc::S_IFMT) != libc::S_IFREG
        {
            return None;
        }
        let offset: i64 = f.call_method0("tell").ok()?.extract().ok()?;
        let len = (st.st_size - offset).max(0) as u64;
        Some(RealFile { fd, offset, len })
    }

    /// Moves the file position past what sendfile sent, as reading would have.
    pub fn advance(&self, py: Python<'_>, to: i64) {
        let _ = self.filelike.bind(py).call_method1("seek", (to,));
    }
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize=8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> FileWrapper {
        FileWrapper {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let data = self
            .filelike
            .bind(py)
            .call_method1("read", (self.blksize,))?;
        let data = data.cast_into::<PyBytes>()?;
        Ok(if data.as_bytes().is_empty() {
            None
        } else {
            Some(data)
        })
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let f = self.filelike.bind(py);
        if f.hasattr("close")? {
            f.call_method0("close")?;
        }
        Ok(())
    }
}
