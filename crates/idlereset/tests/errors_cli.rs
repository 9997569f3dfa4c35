#![allow(clippy::unwrap_used)]
//! Error messages name what failed and print each cause once (a library error that shows its
//! source in its own message and also chains it must not make the cause appear twice).

use std::process::Command;

fn stderr_of(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?} should fail with exit 2"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_missing_network_namespace_is_named_and_its_cause_printed_once() {
    let ns = format!("idlereset-missing-{}", std::process::id());
    for args in [
        vec!["listen", "0", "--netns", ns.as_str()],
        vec![
            "exporter",
            "--listen",
            "127.0.0.1:0",
            "--no-reset-events",
            "--netns",
            ns.as_str(),
        ],
    ] {
        let err = stderr_of(&args);
        assert!(err.contains(&ns), "{err}");
        assert_eq!(
            err.matches("No such file or directory").count(),
            1,
            "cause printed more than once: {err}"
        );
    }
}

#[test]
fn a_missing_file_is_named_and_its_cause_printed_once() {
    let err = stderr_of(&["logs", "/nonexistent/idlereset-test.log"]);
    assert!(err.contains("/nonexistent/idlereset-test.log"), "{err}");
    assert_eq!(err.matches("(os error 2)").count(), 1, "{err}");
}
