//! The example policy `policies/tenant-metadata.xml` and the recipe its comment gives: the
//! recipe, run as written on a domain of libvirt's test driver, stores metadata that
//! prescient reads back as the example's policy.

use prescient::backend::libvirt::domxml;
use prescient::model::Class;
use std::process::Command;

const EXAMPLE: &str = "policies/tenant-metadata.xml";

/// The `virsh metadata …` command of the example's comment, its continuation lines joined.
fn recipe(text: &str) -> String {
    let mut lines = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("virsh "));
    let mut cmd = String::new();
    for l in lines.by_ref() {
        let l = l.trim();
        match l.strip_suffix('\\') {
            Some(part) => cmd.push_str(part),
            None => {
                cmd.push_str(l);
                break;
            }
        }
    }
    assert!(
        cmd.starts_with("virsh metadata DOMAIN "),
        "no recipe in {EXAMPLE}: {cmd:?}"
    );
    cmd
}

#[test]
fn the_documented_recipe_sets_the_example_policy() {
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let cmd = recipe(&text).replace("DOMAIN", "test");
    // Each virsh process gets a fresh test driver, so the recipe's own virsh call runs its
    // command and then dumps the domain in the same session: `virsh` is a shell function
    // that passes every argument of the recipe on, quoted, to the test driver.
    let script = format!(
        "virsh() {{ command virsh -c test:///default \"$(printf \"'%s' \" \"$@\"); dumpxml test\"; }}\n{cmd}\n"
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env_remove("LIBVIRT_DEFAULT_URI")
        .output()
        .expect("sh and virsh (libvirt-clients) must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script}\n{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "virsh refused the recipe: {stderr}"
    );
    assert!(stdout.contains("Metadata modified"), "{stdout}");
    let xml = &stdout[stdout.find("<domain").expect("no domain XML")..];
    assert!(xml.contains("<prescient:tenant"), "{xml}");
    let policy = domxml::parse(xml).unwrap().policy;
    assert_eq!(policy.metadata_error, None);
    assert_eq!(policy.class, Class::Gold);
    assert_eq!(policy.guarantee.cpu, Some(0.5));
    assert_eq!(policy.guarantee.mem, Some(1024.0 * 1024.0));
    assert_eq!(policy.limit.cpu, Some(2.0));
    assert_eq!(policy.limit.mem, Some(4096.0 * 1024.0));
    assert_eq!(policy.limit.disk, Some(209_715_200.0));
    assert_eq!(policy.limit.net, Some(125_000_000.0));
}
