//! Checks shared by the command-line tests.

#![allow(dead_code)]

use std::process::Output;

/// Assert that the command exited with `code`, showing its stderr when it did not.
#[track_caller]
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
