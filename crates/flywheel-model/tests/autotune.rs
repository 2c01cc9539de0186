//! The hyper-parameter search: deterministic for a seed, scores every trial on held-out rows,
//! and returns a model retrained on all rows that does what the best trial did.

use flywheel_data::Record;
use flywheel_model::autotune::AutotuneEvent;
use flywheel_model::{autotune, evaluate, AutotuneOptions, Metric, Report};

fn data(n: usize, seed: u64) -> Vec<Record> {
    let mut x = seed | 1;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    (0..n)
        .map(|i| {
            let c = i % 3;
            let mut words: Vec<String> = (0..6).map(|_| format!("w{}", next(30))).collect();
            words.insert(next(6) as usize, format!("cue{c}"));
            Record {
                text: words.join(" "),
                labels: vec![["x", "y", "z"][c].to_string()],
                line: i as u64 + 2,
            }
        })
        .collect()
}

fn opts(seed: u64) -> AutotuneOptions {
    AutotuneOptions {
        encoder: None,
        budget_secs: 1.0,
        metric: Metric::MacroF1,
        seed,
        threads: 2,
        validation_fraction: 0.2,
        stop_at_budget: false,
    }
}

#[test]
fn same_seed_same_choice_and_a_good_model() {
    let rows = data(300, 4);
    let mut plan = None;
    let (mut seen, mut grown) = (0, false);
    let a = autotune(&rows, "mem", None, "|", &opts(7), &mut |ev| match ev {
        AutotuneEvent::Plan {
            rungs,
            val_rows,
            folds,
            ..
        } => plan = Some((rungs.to_vec(), val_rows, folds)),
        // Linear trials that converge early free budget for more candidates.
        AutotuneEvent::Extended { rungs, work_share } => {
            assert!(work_share > 0.0 && work_share < 1.0, "{work_share}");
            let (r, ..) = plan.as_mut().unwrap();
            assert!(rungs[0] > r[0], "{rungs:?} after {r:?}");
            *r = rungs.to_vec();
            grown = true;
        }
        AutotuneEvent::Trial(_) => seen += 1,
        _ => {}
    })
    .unwrap();
    let (rungs, val_rows, folds) = plan.unwrap();
    assert!(
        grown,
        "the linear trials converge early here: the plan grows"
    );
    assert_eq!(val_rows, 60, "a fifth of the rows, stratified");
    assert_eq!(folds, 5, "small data is cross-validated");
    assert!(
        rungs[0] >= 3 && rungs[1] == rungs[0].div_ceil(3),
        "{rungs:?}"
    );
    assert_eq!(seen, rungs[0] + rungs[1]);
    assert_eq!(a.trials.len(), seen);
    // Trials finish in any order but are kept in plan order.
    assert!(a.trials.iter().enumerate().all(|(i, t)| t.number == i + 1));
    let b = autotune(&rows, "mem", None, "|", &opts(7), &mut |_| {}).unwrap();
    assert_eq!(a.best, b.best);
    let scores = |o: &flywheel_model::AutotuneOutcome| -> Vec<f64> {
        o.trials.iter().map(|t| t.score).collect()
    };
    assert_eq!(scores(&a), scores(&b));
    // The chosen model was retrained on all rows and generalises.
    assert_eq!(a.outcome.train_rows, 300);
    match evaluate(&a.outcome.pipeline, &data(150, 99), "test").unwrap() {
        Report::Classification(r) => assert!(r.macro_f1 > 0.9, "{}", r.macro_f1),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_deadline_cuts_a_rung_short_and_still_trains_a_model() {
    let rows = data(300, 4);
    // A budget that has passed before the first trial: each rung runs one trial per thread.
    let o = AutotuneOptions {
        budget_secs: 1e-3,
        stop_at_budget: true,
        ..opts(7)
    };
    let (mut planned, mut cut) = (Vec::new(), Vec::new());
    let out = autotune(&rows, "mem", None, "|", &o, &mut |ev| match ev {
        AutotuneEvent::Plan { rungs, .. } => planned = rungs.to_vec(),
        AutotuneEvent::Deadline { rung, skipped } => cut.push((rung, skipped)),
        _ => {}
    })
    .unwrap();
    assert!(planned[0] > 2, "{planned:?}");
    assert_eq!(cut, vec![(0, planned[0] - 2)]);
    assert_eq!(out.trials.iter().filter(|t| t.rung == 0).count(), 2);
    assert_eq!(out.trials.iter().filter(|t| t.rung == 1).count(), 1);
    // The finalist is the better of the two that ran.
    let best0 = out.trials[..2]
        .iter()
        .max_by(|a, b| a.score.total_cmp(&b.score).then(b.number.cmp(&a.number)))
        .unwrap();
    assert_eq!(out.best.spec, best0.candidate.spec);
    assert_eq!(out.outcome.train_rows, 300);
}

#[test]
fn rejects_unknown_label_metric_and_tiny_data() {
    let rows = data(300, 4);
    let mut o = opts(1);
    o.metric = Metric::F1("nope".into());
    let e = autotune(&rows, "mem", None, "|", &o, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("no such label"), "{e}");
    let e = autotune(&rows[..6], "mem", None, "|", &opts(1), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("too few"), "{e}");
}
