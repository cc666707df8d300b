//! Every command's `--help` is written for the people who run prescient: it names no issue,
//! no internal path or rustdoc link, and no file that the repository does not have.

use clap::CommandFactory;
use prescient::cli::Cli;
use std::path::Path;

/// (command path, long help) of the binary and every subcommand, nested ones included.
fn all_help() -> Vec<(String, String)> {
    fn walk(cmd: &mut clap::Command, path: String, out: &mut Vec<(String, String)>) {
        out.push((path.clone(), cmd.render_long_help().to_string()));
        for sub in cmd.get_subcommands_mut() {
            let p = format!("{path} {}", sub.get_name());
            walk(sub, p, out);
        }
    }
    let mut out = Vec::new();
    let mut cmd = Cli::command();
    cmd.build();
    walk(&mut cmd, "prescient".into(), &mut out);
    out
}

#[test]
fn help_names_no_issue_internal_path_or_missing_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let helps = all_help();
    assert!(helps.len() >= 8, "every subcommand walked: {}", helps.len());
    for (cmd, text) in &helps {
        let lower = text.to_lowercase();
        for word in [
            "issue", "session", "[`", "super::", "crate::", "src/", "todo",
        ] {
            assert!(
                !lower.contains(word),
                "`{cmd} --help` says {word:?}:\n{text}"
            );
        }
        // Every file the help names is in the repository.
        for token in text.split(|c: char| c.is_whitespace() || "()`,;'\"".contains(c)) {
            let token = token.trim_end_matches(['.', ':']);
            let named_file = ["docs/", "policies/", "scripts/", "libvirt-xml/", "vagrant/"]
                .iter()
                .any(|d| token.starts_with(d));
            if named_file {
                assert!(
                    root.join(token).exists(),
                    "`{cmd} --help` names {token}, which is not in the repository"
                );
            }
        }
    }
}

#[test]
fn daemon_help_shows_its_defaults() {
    let helps = all_help();
    let (_, daemon) = helps.iter().find(|(c, _)| c == "prescient daemon").unwrap();
    let cfg = prescient::config::Config::default();
    for default in [
        format!("default {}", cfg.daemon.uri),
        format!("default {}", cfg.profile.path.display()),
        format!("default {})", cfg.daemon.interval_seconds),
    ] {
        assert!(daemon.contains(&default), "missing {default:?}:\n{daemon}");
    }
}

/// The long help of `prescient CMD…`.
fn help_of(path: &str) -> String {
    let helps = all_help();
    let (_, text) = helps
        .iter()
        .find(|(c, _)| c == path)
        .unwrap_or_else(|| panic!("no command {path}"));
    text.clone()
}

#[test]
fn socket_only_where_a_command_talks_to_the_daemon_and_json_on_every_operator_command() {
    for cmd in [
        "simulate",
        "man",
        "completions",
        "collect",
        "forecast-eval",
        "forecast-plot",
        "frontier-plot",
        "bench",
        "policy validate",
    ] {
        let text = help_of(&format!("prescient {cmd}"));
        assert!(
            !text.contains("--socket"),
            "`{cmd} --help` shows --socket:\n{text}"
        );
    }
    for cmd in [
        "status",
        "tenants",
        "explain",
        "show",
        "override set",
        "override clear",
        "override list",
        "intent add",
        "intent list",
        "intent cancel",
        "policy reload",
        "pause",
        "resume",
    ] {
        let text = help_of(&format!("prescient {cmd}"));
        assert!(text.contains("--socket <PATH>"), "`{cmd} --help`:\n{text}");
        assert!(
            text.contains("--json"),
            "`{cmd} --help` lacks --json:\n{text}"
        );
    }
    assert!(help_of("prescient daemon").contains("--socket <PATH>"));
}

#[test]
fn every_argument_has_a_description() {
    fn walk(cmd: &clap::Command, path: String) {
        for a in cmd.get_arguments() {
            let help = a.get_long_help().or(a.get_help()).map(|h| h.to_string());
            assert!(
                help.is_some_and(|h| !h.trim().is_empty()),
                "`{path}`: {} has no description",
                a.get_id()
            );
        }
        for sub in cmd.get_subcommands() {
            walk(sub, format!("{path} {}", sub.get_name()));
        }
    }
    let mut cmd = Cli::command();
    cmd.build();
    walk(&cmd, "prescient".into());
}

#[test]
fn help_takes_help_and_a_command_path() {
    let bin = env!("CARGO_BIN_EXE_prescient");
    let run = |args: &[&str]| std::process::Command::new(bin).args(args).output().unwrap();
    let out = run(&["help", "--help"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: prescient help"));
    let out = run(&["help", "override", "set"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("--ttl <DURATION>"));
    let out = run(&["help", "nosuch"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch"));
}
