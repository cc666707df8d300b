//! Domain XML → [`DomainConfig`]: vCPUs, max memory, disks, interfaces and the tenant policy
//! declared in `<metadata>` as a `<prescient:tenant>` element of our own namespace.
//!
//! A malformed `<prescient:tenant>` never stops monitoring: the tenant keeps the default
//! policy and `policy.metadata_error` says what was wrong, naming the element and attribute.

use crate::backend::{DiskConfig, DomainConfig, InterfaceConfig};
use crate::model::{Amounts, Class, Resource, TenantPolicy};
use quick_xml::NsReader;
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

/// The namespace URI of prescient's domain metadata.
pub const NAMESPACE: &str = "https://prescient.dev/xmlns/tenant/1";

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("domain XML is malformed: {0}")]
pub struct XmlError(String);

/// Where in the document the reader is, as far as we care.
#[derive(Default)]
struct Path {
    stack: Vec<String>,
}

impl Path {
    fn is(&self, suffix: &[&str]) -> bool {
        self.stack.len() >= suffix.len()
            && self.stack[self.stack.len() - suffix.len()..]
                .iter()
                .zip(suffix)
                .all(|(a, b)| a == b)
    }
}

fn attr(e: &BytesStart, name: &str) -> Result<Option<String>, XmlError> {
    for a in e.attributes() {
        let a = a.map_err(|err| XmlError(err.to_string()))?;
        if a.key.local_name().as_ref() == name {
            let v = a
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|err| XmlError(err.to_string()))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

/// Scale factor to KiB of a libvirt memory unit (libvirt's `virScaleInteger` names).
fn unit_to_kib(unit: &str) -> Option<f64> {
    Some(match unit {
        "b" | "bytes" => 1.0 / 1024.0,
        "KB" => 1000.0 / 1024.0,
        "k" | "K" | "KiB" => 1.0,
        "MB" => 1e6 / 1024.0,
        "M" | "MiB" => 1024.0,
        "GB" => 1e9 / 1024.0,
        "G" | "GiB" => 1024.0 * 1024.0,
        "TB" => 1e12 / 1024.0,
        "T" | "TiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    })
}

/// Parse a domain's XML description.
pub fn parse(xml: &str) -> Result<DomainConfig, XmlError> {
    let mut reader = NsReader::from_str(xml);
    let mut cfg = DomainConfig {
        size_is_limit: true,
        ..DomainConfig::default()
    };
    let mut path = Path::default();
    let mut memory_unit = String::from("KiB");
    let mut vcpu_current: Option<u32> = None;
    let mut tenant: Option<TenantBuilder> = None;
    let mut tenants_seen = 0;
    // Whether the <disk> being read is one we manage (device="disk", not a cdrom or floppy).
    let mut managed_disk = false;

    loop {
        let pos = reader.buffer_position();
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| XmlError(format!("near byte {pos}: {e}")))?;
        let ours = matches!(&ns, ResolveResult::Bound(n) if n.as_ref() == NAMESPACE);
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let name = e.local_name().as_ref().to_string();
                if ours && name == "tenant" && path.is(&["domain", "metadata"]) {
                    tenants_seen += 1;
                    let mut b = TenantBuilder::default();
                    b.start(e);
                    tenant = Some(b);
                } else if let Some(b) = tenant.as_mut() {
                    // Children count by name: `virsh metadata --set` puts only the root
                    // element into our namespace.
                    b.child(&name, e);
                } else if !ours {
                    match name.as_str() {
                        "memory" if path.is(&["domain"]) => {
                            memory_unit = attr(e, "unit")?.unwrap_or_else(|| "KiB".into());
                        }
                        "vcpu" if path.is(&["domain"]) => {
                            vcpu_current = attr(e, "current")?.and_then(|v| v.parse().ok());
                        }
                        "disk" if path.is(&["domain", "devices"]) => {
                            let device = attr(e, "device")?.unwrap_or_else(|| "disk".into());
                            managed_disk = device == "disk";
                            if managed_disk {
                                cfg.disks.push(DiskConfig::default());
                            }
                        }
                        "source" if managed_disk && path.is(&["devices", "disk"]) => {
                            if let Some(d) = cfg.disks.last_mut() {
                                d.source = match attr(e, "file")? {
                                    Some(f) => Some(f),
                                    None => match attr(e, "dev")? {
                                        Some(d) => Some(d),
                                        None => attr(e, "name")?,
                                    },
                                };
                            }
                        }
                        "target" if managed_disk && path.is(&["devices", "disk"]) => {
                            if let Some(d) = cfg.disks.last_mut() {
                                d.target = attr(e, "dev")?.unwrap_or_default();
                            }
                        }
                        "interface" if path.is(&["domain", "devices"]) => {
                            cfg.interfaces.push(InterfaceConfig::default());
                        }
                        "mac" if path.is(&["devices", "interface"]) => {
                            if let Some(i) = cfg.interfaces.last_mut() {
                                i.mac = attr(e, "address")?;
                            }
                        }
                        "target" if path.is(&["devices", "interface"]) => {
                            if let Some(i) = cfg.interfaces.last_mut() {
                                i.target = attr(e, "dev")?;
                            }
                        }
                        _ => {}
                    }
                }
                if !empty {
                    path.stack.push(name);
                } else if ours && name == "tenant" && tenant.is_some() {
                    cfg.policy = tenant.take().map(TenantBuilder::finish).unwrap_or_default();
                }
            }
            Event::Text(ref t) => {
                let text = t.as_ref().trim().to_string();
                if path.is(&["domain", "memory"]) {
                    let factor = unit_to_kib(&memory_unit).ok_or_else(|| {
                        XmlError(format!("<memory unit={memory_unit:?}> is not a known unit"))
                    })?;
                    let v: f64 = text
                        .parse()
                        .map_err(|_| XmlError(format!("<memory> {text:?} is not a number")))?;
                    cfg.max_memory_kib = (v * factor) as u64;
                } else if path.is(&["domain", "vcpu"]) {
                    cfg.vcpus = text
                        .parse()
                        .map_err(|_| XmlError(format!("<vcpu> {text:?} is not a number")))?;
                }
            }
            Event::End(ref e) => {
                let name = e.local_name().as_ref().to_string();
                path.stack.pop();
                if ours && name == "tenant" && tenant.is_some() {
                    cfg.policy = tenant.take().map(TenantBuilder::finish).unwrap_or_default();
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if let Some(c) = vcpu_current {
        cfg.vcpus = c;
    }
    if tenants_seen > 1 {
        cfg.policy = TenantPolicy {
            metadata_error: Some(format!(
                "<prescient:tenant> appears {tenants_seen} times in <metadata>; expected once"
            )),
            ..TenantPolicy::default()
        };
    }
    Ok(cfg)
}

/// Collects `<prescient:tenant>` and its children, remembering the first problem.
#[derive(Default)]
struct TenantBuilder {
    policy: TenantPolicy,
    error: Option<String>,
}

impl TenantBuilder {
    fn fail(&mut self, msg: String) {
        if self.error.is_none() {
            self.error = Some(msg);
        }
    }

    fn start(&mut self, e: &BytesStart) {
        for a in e.attributes() {
            let Ok(a) = a else {
                self.fail("<prescient:tenant> has a malformed attribute".into());
                return;
            };
            let key = a.key.local_name().as_ref().to_string();
            let value = a
                .normalized_value(XmlVersion::Implicit1_0)
                .map(|v| v.into_owned())
                .unwrap_or_default();
            match key.as_str() {
                "class" => match value.parse::<Class>() {
                    Ok(c) => self.policy.class = c,
                    Err(e) => self.fail(format!("<prescient:tenant class>: {e}")),
                },
                "xmlns" => {}
                _ if a.key.as_ref().starts_with("xmlns") => {}
                other => self.fail(format!(
                    "<prescient:tenant> has unknown attribute {other:?} (known: class)"
                )),
            }
        }
    }

    fn child(&mut self, name: &str, e: &BytesStart) {
        let amounts = match name {
            "guarantee" => &mut self.policy.guarantee,
            "limit" => &mut self.policy.limit,
            other => {
                let msg =
                    format!("<prescient:{other}> is not a known element (known: guarantee, limit)");
                self.fail(msg);
                return;
            }
        };
        if let Err(msg) = read_amounts(name, e, amounts) {
            self.fail(msg);
        }
    }

    fn finish(mut self) -> TenantPolicy {
        for r in Resource::ALL {
            if let (Some(g), Some(l)) = (self.policy.guarantee.get(r), self.policy.limit.get(r))
                && g > l
            {
                let msg = format!(
                    "<prescient:guarantee> of {r} ({g} {}) exceeds its <prescient:limit> ({l})",
                    r.unit()
                );
                self.fail(msg);
            }
        }
        match self.error {
            None => self.policy,
            Some(e) => TenantPolicy {
                metadata_error: Some(e),
                ..TenantPolicy::default()
            },
        }
    }
}

fn read_amounts(element: &str, e: &BytesStart, out: &mut Amounts) -> Result<(), String> {
    for a in e.attributes() {
        let a = a.map_err(|_| format!("<prescient:{element}> has a malformed attribute"))?;
        let key = a.key.local_name().as_ref().to_string();
        let raw = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map(|v| v.into_owned())
            .unwrap_or_default();
        let v: f64 = raw
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("<prescient:{element} {key}={raw:?}>: expected a number ≥ 0"))?;
        let (resource, scaled) = match key.as_str() {
            "cpu_cores" => (Resource::Cpu, v),
            "mem_kib" => (Resource::Mem, v),
            "mem_mib" => (Resource::Mem, v * 1024.0),
            "disk_bytes_per_s" => (Resource::Disk, v),
            "net_bytes_per_s" => (Resource::Net, v),
            other => {
                return Err(format!(
                    "<prescient:{element}> has unknown attribute {other:?} (known: cpu_cores, \
                     mem_mib, mem_kib, disk_bytes_per_s, net_bytes_per_s)"
                ));
            }
        };
        *out.get_mut(resource) = Some(scaled);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(metadata: &str) -> String {
        format!(
            r#"<domain type='qemu' id='3'>
  <name>prescient-lab-1</name>
  <uuid>0b0e3f4e-1f6c-4d39-9b1e-3f1e2a9f0a01</uuid>
  <metadata>{metadata}</metadata>
  <memory unit='KiB'>524288</memory>
  <currentMemory unit='KiB'>524288</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/lab1.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/></disk>
    <interface type='network'>
      <mac address='52:54:00:aa:bb:01'/>
      <source network='prescient-lab'/>
      <target dev='vnet3'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>"#
        )
    }

    const GOLD: &str = r#"<prescient:tenant xmlns:prescient="https://prescient.dev/xmlns/tenant/1" class="gold">
  <prescient:guarantee cpu_cores="0.25" mem_mib="128"/>
  <prescient:limit cpu_cores="1" mem_mib="512" disk_bytes_per_s="104857600" net_bytes_per_s="12500000"/>
</prescient:tenant>"#;

    #[test]
    fn reads_devices_and_sizes() {
        let c = parse(&domain("")).unwrap();
        assert_eq!(c.vcpus, 2);
        assert_eq!(c.max_memory_kib, 524_288);
        assert_eq!(c.disks.len(), 1, "the cdrom is not a disk we manage");
        assert_eq!(c.disks[0].target, "vda");
        assert_eq!(
            c.disks[0].source.as_deref(),
            Some("/var/lib/libvirt/images/lab1.qcow2")
        );
        assert_eq!(c.interfaces[0].mac.as_deref(), Some("52:54:00:aa:bb:01"));
        assert_eq!(c.interfaces[0].target.as_deref(), Some("vnet3"));
        assert_eq!(c.policy, TenantPolicy::default(), "no metadata: defaults");
    }

    #[test]
    fn reads_tenant_metadata() {
        let c = parse(&domain(GOLD)).unwrap();
        let p = c.policy;
        assert_eq!(p.metadata_error, None);
        assert_eq!(p.class, Class::Gold);
        assert_eq!(p.guarantee.cpu, Some(0.25));
        assert_eq!(p.guarantee.mem, Some(128.0 * 1024.0));
        assert_eq!(p.guarantee.disk, None);
        assert_eq!(p.limit.mem, Some(512.0 * 1024.0));
        assert_eq!(p.limit.disk, Some(104_857_600.0));
        assert_eq!(p.limit.net, Some(12_500_000.0));
    }

    #[test]
    fn namespace_matters_not_prefix() {
        let other_prefix = GOLD
            .replace("prescient:", "p:")
            .replace("xmlns:prescient", "xmlns:p");
        assert_eq!(
            parse(&domain(&other_prefix)).unwrap().policy.class,
            Class::Gold
        );
        let foreign = GOLD.replace("https://prescient.dev/xmlns/tenant/1", "urn:someone-else");
        assert_eq!(
            parse(&domain(&foreign)).unwrap().policy,
            TenantPolicy::default()
        );
    }

    #[test]
    fn children_without_our_prefix_count() {
        // What `virsh metadata --set '<tenant class="gold"><limit cpu_cores="2"/></tenant>'`
        // stores: only the root element is put into the namespace.
        let set = r#"<prescient:tenant xmlns:prescient="https://prescient.dev/xmlns/tenant/1" class="gold"><limit cpu_cores="2"/></prescient:tenant>"#;
        let p = parse(&domain(set)).unwrap().policy;
        assert_eq!(p.metadata_error, None);
        assert_eq!(p.limit.cpu, Some(2.0));
    }

    #[test]
    fn bad_class_gives_defaults_and_a_clear_error() {
        let bad = GOLD.replace("class=\"gold\"", "class=\"platinum\"");
        let p = parse(&domain(&bad)).unwrap().policy;
        assert_eq!(p.class, Class::Silver);
        assert_eq!(
            p.guarantee.cpu, None,
            "nothing of a malformed element is kept"
        );
        let err = p.metadata_error.unwrap();
        assert!(err.contains("platinum") && err.contains("class"), "{err}");
    }

    #[test]
    fn bad_numbers_units_and_elements_are_named() {
        for (from, to, needle) in [
            ("mem_mib=\"128\"", "mem_mib=\"lots\"", "mem_mib=\"lots\""),
            ("cpu_cores=\"1\"", "cpu_cores=\"-1\"", "cpu_cores=\"-1\""),
            ("cpu_cores=\"1\"", "cpu_cores=\"NaN\"", "NaN"),
            ("cpu_cores=\"1\"", "gpus=\"1\"", "gpus"),
            ("<prescient:limit", "<prescient:ceiling", "ceiling"),
            ("mem_mib=\"512\"", "mem_mib=\"64\"", "exceeds"),
        ] {
            let bad = GOLD.replace(from, to);
            let p = parse(&domain(&bad)).unwrap().policy;
            let err = p.metadata_error.unwrap_or_default();
            assert!(err.contains(needle), "{to}: {err}");
            assert_eq!(p.class, Class::Silver);
        }
    }

    #[test]
    fn duplicate_tenant_elements_are_refused() {
        let twice = format!("{GOLD}{GOLD}");
        let p = parse(&domain(&twice)).unwrap().policy;
        assert!(p.metadata_error.unwrap().contains("2 times"));
    }

    #[test]
    fn memory_units_and_current_vcpus() {
        let xml = "<domain><memory unit='MiB'>1024</memory><vcpu current='1'>4</vcpu></domain>";
        let c = parse(xml).unwrap();
        assert_eq!(c.max_memory_kib, 1_048_576);
        assert_eq!(c.vcpus, 1);
        let bad = parse("<domain><memory unit='parsecs'>1</memory></domain>").unwrap_err();
        assert!(bad.to_string().contains("parsecs"));
    }

    #[test]
    fn malformed_xml_is_an_error_not_a_panic() {
        assert!(parse("<domain><vcpu>2</domain>").is_err());
        assert!(parse("<domain><vcpu>two</vcpu></domain>").is_err());
        assert!(parse("\u{0}garbage<<").is_err());
    }
}
