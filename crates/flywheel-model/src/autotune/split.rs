//! Stratified validation splits and folds: every class keeps its share of the rows.

use std::collections::BTreeMap;

use flywheel_nn::Rng;

use crate::task::{Targets, Task};

/// Row indices by class (first label); one group for regression and multi-label.
fn class_groups(targets: &Targets, task: Task, n: usize) -> BTreeMap<i64, Vec<usize>> {
    let mut groups: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for i in 0..n {
        let key = match (task, targets) {
            (Task::Multiclass, Targets::Classes(c)) => i64::from(c[i]),
            (Task::Binary, Targets::Values(v)) => i64::from(v[i] > 0.5),
            _ => 0,
        };
        groups.entry(key).or_default().push(i);
    }
    groups
}

/// Row indices `(train, validation)` of a stratified split of `n` rows: each class gives
/// `fraction` of its rows, chosen at random with `seed`, to validation (every class keeps at
/// least one training row). Regression and multi-label rows split at random.
pub fn stratified_split(
    targets: &Targets,
    task: Task,
    n: usize,
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut rng = Rng::with_stream(seed, 5);
    let groups = class_groups(targets, task, n);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (_, mut rows) in groups {
        rng.shuffle(&mut rows);
        let k = ((rows.len() as f64) * fraction).round() as usize;
        let k = k.min(rows.len().saturating_sub(1));
        val.extend_from_slice(&rows[..k]);
        train.extend_from_slice(&rows[k..]);
    }
    rng.shuffle(&mut train);
    val.sort_unstable();
    (train, val)
}

/// `(train, validation)` row indices of `k` stratified folds: each class's rows, shuffled with
/// `seed`, are dealt to the folds in turn, so every fold holds about `1/k` of every class.
pub fn stratified_folds(
    targets: &Targets,
    task: Task,
    n: usize,
    k: usize,
    seed: u64,
) -> Vec<(Vec<usize>, Vec<usize>)> {
    let mut rng = Rng::with_stream(seed, 6);
    let groups = class_groups(targets, task, n);
    let k = k.max(2);
    let mut fold_of = vec![0usize; n];
    let mut next = 0usize;
    for (_, mut rows) in groups {
        rng.shuffle(&mut rows);
        for i in rows {
            fold_of[i] = next % k;
            next += 1;
        }
    }
    (0..k)
        .map(|f| {
            let mut train: Vec<usize> = (0..n).filter(|&i| fold_of[i] != f).collect();
            let val: Vec<usize> = (0..n).filter(|&i| fold_of[i] == f).collect();
            rng.shuffle(&mut train);
            (train, val)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stratified_and_seeded() {
        let classes: Vec<u32> = (0..100).map(|i| u32::from(i % 10 == 0)).collect();
        let t = Targets::Classes(classes.clone());
        let (train, val) = stratified_split(&t, Task::Multiclass, 100, 0.2, 1);
        assert_eq!(train.len() + val.len(), 100);
        assert_eq!(val.iter().filter(|&&i| classes[i] == 1).count(), 2);
        assert_eq!(val.len(), 20);
        assert_eq!(stratified_split(&t, Task::Multiclass, 100, 0.2, 1).1, val);
        assert_ne!(stratified_split(&t, Task::Multiclass, 100, 0.2, 2).1, val);
    }

    #[test]
    fn folds_cover_every_row_once_and_keep_class_shares() {
        let classes: Vec<u32> = (0..100).map(|i| u32::from(i % 5 == 0)).collect();
        let t = Targets::Classes(classes.clone());
        let folds = stratified_folds(&t, Task::Multiclass, 100, 5, 3);
        let mut seen = vec![0; 100];
        for (train, val) in &folds {
            assert_eq!(train.len() + val.len(), 100);
            assert_eq!(val.iter().filter(|&&i| classes[i] == 1).count(), 4);
            for &i in val {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&s| s == 1));
    }
}
