//! The matrix's kernel columns as people read them: grouped by architecture (x86-64 first), each
//! group in version order (the point release a distribution names), and a set of columns described as ranges of that order ("5.10.262 to
//! 6.1.192"), so that a finding or a profile verdict that holds on several kernels is said once.

use crate::arch::Arch;
use crate::data::RunInfo;
use std::collections::BTreeMap;

/// The version a column is ordered and labelled by: its point release (`6.1.192`), else its
/// `uname -r`.
pub fn version_label(info: &RunInfo) -> String {
    info.kernel_version().map_or_else(|| info.release.clone(), |v| v.to_string())
}

/// Whether a column is a configuration variant of a build (`build-6.12-no-thp`: the base
/// configuration with options changed), rather than a kernel version of its own.
pub fn is_configuration_variant(info: &RunInfo) -> bool {
    info.build.as_ref().is_some_and(|b| !b.differs.is_empty())
}

/// The architecture a column ran on; a column recorded before columns named theirs is x86-64.
pub fn arch(info: &RunInfo) -> Arch {
    info.arch.unwrap_or(Arch::X86_64)
}

/// The column ids grouped by architecture (x86-64 first, `Arch`'s order), each group in version
/// order; columns of the same version (flavours, a host) by id. Grouping here, where every reader
/// of the order takes it, keeps a range of versions (`describe`) within one architecture: the
/// arm64 5.10.223 never sits between two x86 versions.
pub fn by_version(kernels: &BTreeMap<String, RunInfo>) -> Vec<&str> {
    let mut ids: Vec<&str> = kernels.keys().map(String::as_str).collect();
    ids.sort_by_key(|id| (arch(&kernels[*id]), kernels[*id].kernel_version(), *id));
    ids
}

/// The pairs of columns of the same kernel on two architectures: a column of an architecture other
/// than x86-64 whose id is an x86-64 column's id with `-<arch>` after it
/// (`debian-6.1-cloud-arm64` and `debian-6.1-cloud`), as `(x86-64 id, other id)`, in the order of
/// `by_version`. Paired by id, not by point release: ids name a Debian track (a release and a
/// flavour), and the two architectures' tracks may stand at different point releases of it
/// (bullseye's arm64 5.10.223 beside its amd64 5.10.262), while one point release is shared by
/// columns that are not the same kernel (builds, `-rt`).
pub fn arch_pairs(kernels: &BTreeMap<String, RunInfo>) -> Vec<(&str, &str)> {
    by_version(kernels)
        .into_iter()
        .filter_map(|id| {
            let a = arch(&kernels[id]);
            let base = id.strip_suffix(a.name())?.strip_suffix('-')?;
            let (x86, _) = kernels.get_key_value(base)?;
            (a != Arch::X86_64 && arch(&kernels[base]) == Arch::X86_64).then_some((x86.as_str(), id))
        })
        .collect()
}

/// The stretches of `order` whose columns are all in the set: `[[a, b], [d]]` for `{a, b, d}` in
/// `a b c d`.
pub fn stretches<'a>(order: &[&'a str], in_set: impl Fn(&str) -> bool) -> Vec<Vec<&'a str>> {
    let mut out: Vec<Vec<&'a str>> = Vec::new();
    let mut open = false;
    for id in order {
        if in_set(id) {
            match out.last_mut() {
                Some(s) if open => s.push(id),
                _ => out.push(vec![id]),
            }
            open = true;
        } else {
            open = false;
        }
    }
    out
}

/// A set of columns in words: `every kernel (7)`, or its stretches, each as `5.10.262 to 6.1.192
/// (debian-5.10-cloud, debian-6.1-cloud)` or `7.3 (debian-7.3-cloud)`, joined with `; `.
pub fn describe(kernels: &BTreeMap<String, RunInfo>, in_set: impl Fn(&str) -> bool) -> String {
    let order = by_version(kernels);
    // A stretch never runs from one architecture's newest kernel into the next one's oldest.
    let parts: Vec<Vec<&str>> = crate::arch::ALL
        .into_iter()
        .flat_map(|a| {
            let group: Vec<&str> = order.iter().copied().filter(|id| arch(&kernels[*id]) == a).collect();
            stretches(&group, &in_set)
        })
        .collect();
    let count: usize = parts.iter().map(Vec::len).sum();
    if count == order.len() && count > 1 {
        return format!("every kernel ({count})");
    }
    let label = |id: &str| kernels.get(id).map_or_else(|| id.to_string(), version_label);
    parts
        .iter()
        .map(|s| match s.as_slice() {
            [one] => format!("{} ({one})", label(one)),
            [first, .., last] => format!("{} to {} ({})", label(first), label(last), s.join(", ")),
            [] => String::new(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernels() -> BTreeMap<String, RunInfo> {
        [
            ("debian-6.1-cloud", "6.1.0-56-cloud-amd64", "#1 SMP Debian 6.1.192-2"),
            ("debian-5.10-cloud", "5.10.0-46-cloud-amd64", "#1 SMP Debian 5.10.262-1"),
            ("host", "6.18.44-fc-v669", "#1 SMP PREEMPT_DYNAMIC @0"),
            ("debian-7.2-cloud", "7.2.13+deb14-cloud-amd64", "#1 SMP Debian 7.2.13-1"),
        ]
        .into_iter()
        .map(|(id, release, version)| {
            (
                id.to_string(),
                RunInfo { release: release.into(), version: version.into(), ..RunInfo::default() },
            )
        })
        .collect()
    }

    #[test]
    fn orders_by_point_release_and_describes_ranges() {
        let k = kernels();
        assert_eq!(by_version(&k), ["debian-5.10-cloud", "debian-6.1-cloud", "host", "debian-7.2-cloud"]);
        assert_eq!(describe(&k, |_| true), "every kernel (4)");
        assert_eq!(
            describe(&k, |id| id != "host"),
            "5.10.262 to 6.1.192 (debian-5.10-cloud, debian-6.1-cloud); 7.2.13 (debian-7.2-cloud)"
        );
        assert_eq!(describe(&k, |id| id == "host"), "6.18.44 (host)");
        assert_eq!(describe(&k, |_| false), "");
        assert!(arch_pairs(&k).is_empty());
    }

    #[test]
    fn groups_by_architecture_and_pairs_by_id() {
        let mut k = kernels();
        let arm = |release: &str, version: &str| RunInfo {
            release: release.into(),
            version: version.into(),
            arch: Some(Arch::Arm64),
            ..RunInfo::default()
        };
        k.insert("debian-5.10-cloud-arm64".into(), arm("5.10.0-32-cloud-arm64", "#1 SMP Debian 5.10.223-1"));
        k.insert("debian-7.2-cloud-arm64".into(), arm("7.2.13+deb14-cloud-arm64", "#1 SMP Debian 7.2.13-1"));
        // An arm64 column with no x86 twin, and an x86 column whose id merely ends in -arm64.
        k.insert(
            "debian-6.12-cloud-arm64".into(),
            arm("6.12.118+deb13-cloud-arm64", "#1 SMP Debian 6.12.118-1"),
        );
        k.insert(
            "host-arm64".into(),
            RunInfo { release: "6.18.50".into(), version: "#1".into(), ..RunInfo::default() },
        );
        assert_eq!(
            by_version(&k),
            [
                "debian-5.10-cloud",
                "debian-6.1-cloud",
                "host",
                "host-arm64",
                "debian-7.2-cloud",
                "debian-5.10-cloud-arm64",
                "debian-6.12-cloud-arm64",
                "debian-7.2-cloud-arm64"
            ]
        );
        assert_eq!(
            arch_pairs(&k),
            [
                ("debian-5.10-cloud", "debian-5.10-cloud-arm64"),
                ("debian-7.2-cloud", "debian-7.2-cloud-arm64")
            ]
        );
        // A range stays within one architecture.
        assert_eq!(
            describe(&k, |id| id.starts_with("debian-7.2") || id == "debian-5.10-cloud-arm64"),
            "7.2.13 (debian-7.2-cloud); 5.10.223 (debian-5.10-cloud-arm64); 7.2.13 (debian-7.2-cloud-arm64)"
        );
    }
}
