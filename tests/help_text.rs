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
