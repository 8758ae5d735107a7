//! Paired runs: what the clients family adds, from runs with it and without it made alternately,
//! so that a drift of the machine over the runs falls on both halves alike.

use anyhow::Result;

/// What the clients family adds to the suite's time: `n` differences of a run with it (the first
/// is `real`, already made) and one without it, run alternately by `run(i, with)`. NaN for a pair
/// whose runs did not both complete.
pub fn clients_pairs(
    real: &model::Results,
    n: u32,
    run: &mut dyn FnMut(usize, bool) -> Result<model::Results>,
) -> Result<Vec<f64>> {
    let suite_s = |r: &model::Results| match (r.kernel.status, r.kernel.suite_ms) {
        (model::RunStatus::Complete, Some(ms)) => ms as f64 / 1000.0,
        _ => f64::NAN,
    };
    paired(suite_s(real), n, &mut |i, with| run(i, with).map(|r| suite_s(&r)))
}

/// `n` differences, seconds, of a run with the clients family and one without it, made
/// alternately by `run(i, with)` (with first, without second); the first pair's run with it is
/// `first`, already made. A run that did not complete is NaN, and so is its pair.
pub fn paired(first: f64, n: u32, run: &mut dyn FnMut(usize, bool) -> Result<f64>) -> Result<Vec<f64>> {
    let mut pairs = Vec::new();
    for i in 0..n as usize {
        let with = if i == 0 { first } else { run(i, true)? };
        pairs.push(with - run(i, false)?);
    }
    Ok(pairs)
}

/// What the family adds to a run as a fraction of it: the median over the pairs of each pair's
/// difference over its run without the family.
pub fn growth(pairs: &[f64], without: &[f64]) -> f64 {
    median(&pairs.iter().zip(without).map(|(d, w)| d / w).collect::<Vec<_>>())
}

/// The median of `xs`; NaN if there are none or any is NaN (a run that failed has no figure).
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() || xs.iter().any(|x| x.is_nan()) {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() % 2 {
        1 => v[v.len() / 2],
        _ => (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0,
    }
}
