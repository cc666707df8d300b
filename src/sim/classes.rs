//! Tenant classes for a replay: drawn in given proportions with a seed, or read from a file.

use crate::model::Class;
use std::collections::HashMap;
use std::path::Path;

/// `gold=0.2,silver=0.5,bronze=0.3`: each class's share of the tenants.
pub fn parse_ratios(spec: &str) -> Result<[(Class, f64); 3], String> {
    let mut shares: HashMap<Class, f64> = HashMap::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| format!("--classes: {part:?} is not CLASS=SHARE"))?;
        let class: Class = name.trim().parse().map_err(|e| format!("--classes: {e}"))?;
        let v: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("--classes: share {value:?} of {class} is not a number ≥ 0"))?;
        if shares.insert(class, v).is_some() {
            return Err(format!("--classes: {class} given twice"));
        }
    }
    let total: f64 = shares.values().sum();
    if (total - 1.0).abs() > 1e-6 {
        return Err(format!("--classes: shares add up to {total}, not 1"));
    }
    Ok([Class::Gold, Class::Silver, Class::Bronze].map(|c| (c, *shares.get(&c).unwrap_or(&0.0))))
}

/// SplitMix64: a small, well-known generator, so a seed means the same on every machine.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Assign classes to `n` tenants: shuffle them with `seed`, then hand out the classes in
/// order of weight by their (rounded) shares.
pub fn assign(n: usize, ratios: &[(Class, f64); 3], seed: u64) -> Vec<Class> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix(seed);
    for i in (1..n).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let mut classes = vec![Class::Bronze; n];
    let mut at = 0;
    let mut cumulative = 0.0;
    for &(class, share) in ratios {
        cumulative += share;
        let end = ((cumulative * n as f64).round() as usize).min(n);
        for &i in &order[at..end.max(at)] {
            classes[i] = class;
        }
        at = end.max(at);
    }
    classes
}

/// A file of `NAME CLASS` lines (NAME: the trace file's name without `.csv[.gz]`; `#`
/// comments; separators: spaces, tabs, `,` or `=`). Every tenant must be named.
pub fn read_file(path: &Path, names: &[String]) -> Result<Vec<Class>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--classes {}: {e}", path.display()))?;
    let mut map: HashMap<String, Class> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line
            .split(|c: char| c.is_whitespace() || c == ',' || c == '=')
            .filter(|p| !p.is_empty());
        let (Some(name), Some(class), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "{} line {}: expected NAME CLASS",
                path.display(),
                i + 1
            ));
        };
        let class: Class = class
            .parse()
            .map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))?;
        let name = crate::trace::vm_name(Path::new(name));
        map.insert(name, class);
    }
    names
        .iter()
        .map(|n| {
            map.get(n)
                .copied()
                .ok_or_else(|| format!("{}: no class for VM {n}", path.display()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_and_seeded_assignment() {
        let r = parse_ratios("gold=0.2,silver=0.5,bronze=0.3").unwrap();
        let a = assign(500, &r, 42);
        let count = |c| a.iter().filter(|&&x| x == c).count();
        assert_eq!(
            (
                count(Class::Gold),
                count(Class::Silver),
                count(Class::Bronze)
            ),
            (100, 250, 150)
        );
        assert_eq!(a, assign(500, &r, 42), "deterministic");
        assert_ne!(a, assign(500, &r, 43));
    }

    #[test]
    fn bad_ratio_specs_are_explained() {
        assert!(
            parse_ratios("gold=0.5,silver=0.6")
                .unwrap_err()
                .contains("add up")
        );
        assert!(parse_ratios("platinum=1").unwrap_err().contains("platinum"));
        assert!(parse_ratios("gold").unwrap_err().contains("CLASS=SHARE"));
        assert!(
            parse_ratios("gold=-1,silver=2")
                .unwrap_err()
                .contains("≥ 0")
        );
    }

    #[test]
    fn class_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("classes.txt");
        std::fs::write(&f, "# vm class\n1.csv.gz gold\n2 = bronze\n").unwrap();
        let names = vec!["1".to_string(), "2".to_string()];
        assert_eq!(read_file(&f, &names).unwrap(), [Class::Gold, Class::Bronze]);
        let e = read_file(&f, &["3".to_string()]).unwrap_err();
        assert!(e.contains("no class for VM 3"));
    }
}
