#![allow(clippy::unwrap_used)]
//! Every command documents itself with examples; completions and the man page come from the
//! same clap definition.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_idlereset"))
}

fn stdout_of(args: &[&str]) -> String {
    let out = bin().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn top_level_and_every_subcommand_help_has_examples() {
    let top = stdout_of(&["--help"]);
    assert!(top.contains("Examples:"), "{top}");
    // Subcommand names from the help's command list.
    let cmds: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  ") || l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|c| c != "help" && c != "man")
        .collect();
    assert!(cmds.len() >= 5, "{cmds:?}");
    for c in &cmds {
        let h = stdout_of(&[c, "--help"]);
        assert!(h.contains("Examples:"), "`{c} --help` lacks examples:\n{h}");
    }
    for sub in ["up", "down", "status", "exec", "capture", "reproduce"] {
        let h = stdout_of(&["lab", sub, "--help"]);
        assert!(
            h.contains("Example") || sub == "down" || sub == "status",
            "`lab {sub} --help`:\n{h}"
        );
    }
}

#[test]
fn completions_and_man_page() {
    let bash = stdout_of(&["completions", "bash"]);
    assert!(
        bash.contains("idlereset") && bash.contains("reproduce"),
        "bash completion lacks commands"
    );
    let zsh = stdout_of(&["completions", "zsh"]);
    assert!(zsh.contains("#compdef idlereset"));
    let man = stdout_of(&["man"]);
    assert!(
        man.contains(".TH idlereset"),
        "{}",
        &man[..man.len().min(200)]
    );
}

#[test]
fn bad_usage_exits_2() {
    let out = bin()
        .args(["lab", "reproduce", "--fw-timeout", "12q"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("12q"));
}
