//! `prescient man`: one page for the binary and every subcommand (their options included),
//! with the files and environment prescient uses.

use clap::CommandFactory;
use clap_mangen::Man;
use std::io::Write;

/// A section rendered by clap_mangen, without the roff preamble and its `.SH` heading: the
/// body, to be placed under a heading of our own.
fn body(
    man: &Man,
    render: fn(&Man, &mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<String> {
    let mut out = Vec::new();
    render(man, &mut out)?;
    let text = String::from_utf8_lossy(&out);
    Ok(text
        .lines()
        .filter(|l| !l.starts_with(".ie \\n(.g") && !l.starts_with(".el .ds Aq"))
        .skip_while(|l| l.starts_with(".SH"))
        .fold(String::new(), |acc, l| acc + l + "\n"))
}

/// Every subcommand under `cmd`, depth first, each with its synopsis, description and
/// options.
fn commands(cmd: &clap::Command, out: &mut Vec<u8>) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_bin_name().unwrap_or(sub.get_name()).to_string();
        let man = Man::new(sub.clone());
        writeln!(out, ".SS \"{}\"", name.replace('-', "\\-"))?;
        out.extend(body(&man, Man::render_synopsis_section)?.as_bytes());
        writeln!(out, ".PP")?;
        out.extend(body(&man, Man::render_description_section)?.as_bytes());
        out.extend(body(&man, Man::render_options_section)?.as_bytes());
        commands(sub, out)?;
    }
    Ok(())
}

const ENVIRONMENT: &str = r#".SH ENVIRONMENT
.TP
\fBPRESCIENT_SOCKET\fR
The control socket the operator's commands connect to when no \fB\-\-socket\fR is given.
.TP
\fBRUST_LOG\fR
The log filter when no \fB\-\-log\fR is given (e.g. \fIinfo\fR, \fIprescient=debug\fR).
"#;

const FILES: &str = r#".SH FILES
.TP
\fI/etc/prescient/prescient.toml\fR
The daemon's configuration, as the systemd unit passes it with \fB\-\-config\fR; the example
\fIpolicies/prescient.toml\fR shipped with prescient lists every key with its default.
.TP
\fI/var/lib/prescient/profile.db\fR
The profile database (\fB\-\-db\fR, [profile] path): samples, aggregates, forecasters' state,
allocations, actuations, overrides and intents.
.TP
\fI/var/lib/prescient/audit.log\fR
The audit log ([control] audit_log, beside the profile database): one JSON line per change
asked for over the control socket.
.TP
\fI/run/prescient/prescient.sock\fR
The control socket ([control] socket, \fB\-\-socket\fR).
.TP
\fIpolicies/default.toml\fR
An example policy file (\fB\-\-policy\-file\fR, [allocate] policy_file): classes,
reservations, limits and the host reserve.
.TP
\fIpolicies/tenant\-metadata.xml\fR
An example of a tenant's policy in its domain's metadata, with the virsh command that sets it.
"#;

/// The page, as roff.
pub fn page() -> std::io::Result<Vec<u8>> {
    let mut cmd = super::Cli::command();
    cmd.build();
    let man = Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    writeln!(out, ".SH COMMANDS")?;
    commands(&cmd, &mut out)?;
    out.extend(ENVIRONMENT.as_bytes());
    out.extend(FILES.as_bytes());
    man.render_version_section(&mut out)?;
    // clap_mangen starts every section with the same two preamble lines: keep the first two.
    let text = String::from_utf8_lossy(&out).into_owned();
    let mut preamble = 0;
    let mut page = String::new();
    for l in text.lines() {
        if l.starts_with(".ie \\n(.g") || l.starts_with(".el .ds Aq") {
            preamble += 1;
            if preamble > 2 {
                continue;
            }
        }
        page.push_str(l);
        page.push('\n');
    }
    Ok(page.into_bytes())
}
