//! vNIC bandwidth with `tc` on the domain's tap, where libvirt's own vNIC QoS cannot work
//! (it needs the sfq qdisc and the police action, which many kernels lack):
//!
//! * guest inbound (the tap's egress): an htb class at the rate, with a pfifo under it;
//! * guest outbound (the tap's ingress): redirected to an ifb device shaped by tbf.
//!
//! Each direction is held at the rate given. Device names are checked before they reach
//! `tc`; the ifb device goes when the domain does.

use std::process::Command;

/// A refusal from `tc` or `ip`: the command and what it said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{command}: {message}")]
pub struct TcError {
    pub command: String,
    pub message: String,
}

/// Whether `name` is a network device name we pass to `tc` (IFNAMSIZ, no option syntax).
pub fn valid_device(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The ifb device that carries `tap`'s guest-outbound traffic.
pub fn ifb_of(tap: &str) -> String {
    let mut name = format!("pfb-{tap}");
    name.truncate(15);
    name
}

fn run(program: &str, args: &[&str]) -> Result<String, TcError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| TcError {
            command: command.clone(),
            message: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(TcError {
            command,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Whether `tc` can be run here.
pub fn available() -> bool {
    run("tc", &["-V"]).is_ok()
}

/// Hold `tap`'s traffic at `bytes_per_s` each way (0: remove the shaping).
pub fn shape(tap: &str, bytes_per_s: u64) -> Result<(), TcError> {
    if !valid_device(tap) {
        return Err(TcError {
            command: "tc".into(),
            message: format!("{tap:?} is not a device name prescient passes to tc"),
        });
    }
    let ifb = ifb_of(tap);
    if bytes_per_s == 0 {
        // Deleting what is not there fails harmlessly.
        let _ = run("tc", &["qdisc", "del", "dev", tap, "root"]);
        let _ = run("tc", &["qdisc", "del", "dev", tap, "ingress"]);
        let _ = run("ip", &["link", "del", &ifb]);
        return Ok(());
    }
    let rate = format!("{}bit", bytes_per_s.saturating_mul(8));
    // htb cannot be changed in place ("Change operation not supported"): a tap already
    // shaped (by this daemon, or by one before it that left its settings) keeps its root
    // and gets the new rate on its class.
    if is_shaped(tap) != Some(true) {
        run(
            "tc",
            &[
                "qdisc", "replace", "dev", tap, "root", "handle", "1:", "htb", "default", "1",
            ],
        )?;
    }
    let tap_args: [&[&str]; 2] = [
        &[
            "class", "replace", "dev", tap, "parent", "1:", "classid", "1:1", "htb", "rate", &rate,
            "ceil", &rate,
        ],
        &[
            "qdisc", "replace", "dev", tap, "parent", "1:1", "handle", "2:", "pfifo", "limit",
            "1000",
        ],
    ];
    for args in tap_args {
        run("tc", args)?;
    }
    if run("ip", &["link", "show", &ifb]).is_err() {
        run("ip", &["link", "add", &ifb, "type", "ifb"])?;
    }
    run("ip", &["link", "set", &ifb, "up"])?;
    run(
        "tc",
        &["qdisc", "replace", "dev", tap, "handle", "ffff:", "ingress"],
    )?;
    run(
        "tc",
        &[
            "filter", "replace", "dev", tap, "parent", "ffff:", "protocol", "all", "prio", "1",
            "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", &ifb,
        ],
    )?;
    // A burst of 1/10 s of traffic, at least 64 KiB, so that tbf can reach its rate.
    let burst = format!("{}", (bytes_per_s / 10).max(65536));
    run(
        "tc",
        &[
            "qdisc", "replace", "dev", &ifb, "root", "handle", "1:", "tbf", "rate", &rate, "burst",
            &burst, "latency", "100ms",
        ],
    )?;
    Ok(())
}

/// Whether `tap` is shaped now (an htb root qdisc).
pub fn is_shaped(tap: &str) -> Option<bool> {
    if !valid_device(tap) {
        return None;
    }
    run("tc", &["qdisc", "show", "dev", tap, "root"])
        .ok()
        .map(|out| out.contains("htb 1:"))
}

/// Remove the ifb device of a tap whose domain is gone.
pub fn forget(tap: &str) {
    if valid_device(tap) {
        let _ = run("ip", &["link", "del", &ifb_of(tap)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_device_names_reach_tc() {
        assert!(valid_device("vnet12"));
        assert!(valid_device("tap_a.1"));
        assert!(!valid_device(""));
        assert!(!valid_device("-help"));
        assert!(!valid_device("vnet0; reboot"));
        assert!(!valid_device("a-name-longer-than-15"));
        assert_eq!(ifb_of("vnet12"), "pfb-vnet12");
        assert!(ifb_of("averyveryverylongtap").len() <= 15);
    }
}
