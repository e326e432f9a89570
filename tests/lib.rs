//! segue's end-to-end tests over whole pipelines live in this package's test targets
//! (`model.rs`); the tests of one crate live in that crate's own `tests/`.
