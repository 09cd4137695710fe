//! Exposes pyo3's interpreter cfgs (`Py_3_14`, `PyPy`, …) to this crate, so code that reads
//! CPython's string layout directly can fall back where that layout is not available.
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
