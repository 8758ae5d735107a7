//! "Did you mean": the known names closest to a misspelt one, for one-line errors about an unknown
//! behaviour, kernel, profile or observation.
//!
//! Distance is `strsim`'s normalised Damerau-Levenshtein (a swapped pair of letters counts once, as
//! people mistype them); `strsim` is already in the workspace's lock (a dependency of a
//! dependency), has no dependencies of its own, and is what clap and cargo use for the same job,
//! so it beats a hand-written edit distance to maintain here.

/// Up to `n` of `known` closest to `wrong`, closest first; only those that plausibly are what was
/// meant (similarity at least a half, or `wrong` contained in them) and nearly as close as the
/// closest. Ties keep `known`'s order.
pub fn closest<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>, n: usize) -> Vec<&'a str> {
    let lower = wrong.to_lowercase();
    let contains = |k: &str| !lower.is_empty() && k.to_lowercase().contains(&lower);
    let mut scored: Vec<(f64, usize, &str)> = known
        .into_iter()
        .enumerate()
        .filter(|(_, k)| *k != wrong)
        .map(|(i, k)| (strsim::normalized_damerau_levenshtein(&lower, &k.to_lowercase()), i, k))
        .filter(|(s, _, k)| *s >= 0.5 || contains(k))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let best = scored.first().map_or(0.0, |s| s.0);
    let mut out: Vec<&str> = Vec::new();
    for (_, _, k) in scored.into_iter().filter(|s| s.0 >= best - 0.1 || contains(s.2)) {
        if !out.contains(&k) {
            out.push(k);
        }
        if out.len() == n {
            break;
        }
    }
    out
}

/// `closest` as the tail of a message: ` (did you mean "a" or "b"?)`, or nothing.
pub fn did_you_mean<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let near = closest(wrong, known, 3);
    match near.as_slice() {
        [] => String::new(),
        [one] => format!(" (did you mean {one:?}?)"),
        [rest @ .., last] => format!(
            " (did you mean {} or {last:?}?)",
            rest.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_what_was_meant_and_nothing_far_off() {
        let known = ["fault read", "fault write", "EINVAL", "fault minor read"];
        assert_eq!(closest("fault reed", known, 2), ["fault read"], "not the far ones");
        assert_eq!(closest("fault", known, 3), ["fault read", "fault write", "fault minor read"]);
        assert_eq!(closest("EINAVL", known, 3), ["EINVAL"], "a swapped pair is one edit");
        assert!(closest("completely different", known, 3).is_empty());
        let ids = ["populate.read_missing", "populate.write_missing", "api.features"];
        assert_eq!(closest("populate.read_mising", ids, 1), ["populate.read_missing"]);
        assert_eq!(did_you_mean("api.feature", ids), " (did you mean \"api.features\"?)");
        assert_eq!(
            did_you_mean("populate.missing", ids),
            " (did you mean \"populate.read_missing\" or \"populate.write_missing\"?)"
        );
        assert_eq!(did_you_mean("zzz", ids), "");
    }
}
