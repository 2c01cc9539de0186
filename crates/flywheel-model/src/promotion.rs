//! Champion/challenger: whether a retrained model may replace the served one, judged on the
//! same frozen holdout, with the reason in words and the numbers compared.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::metrics::ClassMetrics;
use crate::report::Report;

/// When a challenger may replace the champion. Gains and drops are in points (0–100 scale).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PromotionPolicy {
    /// The challenger's macro-F1 (regression: R²) must beat the champion's by at least this.
    pub min_gain: f64,
    /// No class's F1 may fall by more than this.
    pub max_class_drop: f64,
}

impl Default for PromotionPolicy {
    /// +0.5 pt macro-F1, at most −2 pt on any class.
    fn default() -> Self {
        PromotionPolicy {
            min_gain: 0.5,
            max_class_drop: 2.0,
        }
    }
}

/// The numbers of one model on one dataset that the decision reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    /// Macro-F1 (classification, multi-label) or R² (regression), as a fraction.
    pub headline: f64,
    /// Accuracy (multi-label: 1 − Hamming loss; regression: absent).
    pub accuracy: Option<f64>,
    /// F1 per class (empty for regression).
    pub per_class_f1: BTreeMap<String, f64>,
}

impl Scores {
    /// The scores of a report.
    pub fn of(report: &Report) -> Scores {
        let f1s =
            |m: &BTreeMap<String, ClassMetrics>| m.iter().map(|(k, v)| (k.clone(), v.f1)).collect();
        match report {
            Report::Classification(c) => Scores {
                headline: c.macro_f1,
                accuracy: Some(c.accuracy),
                per_class_f1: f1s(&c.per_class),
            },
            Report::Multilabel(m) => Scores {
                headline: m.macro_f1,
                accuracy: Some(1.0 - m.hamming_loss),
                per_class_f1: f1s(&m.per_class),
            },
            Report::Regression(r) => Scores {
                headline: r.r2,
                accuracy: None,
                per_class_f1: BTreeMap::new(),
            },
        }
    }
}

/// A decision and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Promote the challenger.
    pub promote: bool,
    /// One sentence with the numbers.
    pub reason: String,
}

/// Judges a challenger against the champion on the same data (`metric` names the headline in
/// the reason: `macro-F1` or `R²`).
pub fn judge(
    champion: &Scores,
    challenger: &Scores,
    policy: &PromotionPolicy,
    metric: &str,
) -> Verdict {
    let gain = 100.0 * (challenger.headline - champion.headline);
    let headline = format!(
        "{metric} on the frozen holdout {:.4} → {:.4} ({gain:+.2} pt)",
        champion.headline, challenger.headline
    );
    if gain < policy.min_gain {
        return Verdict {
            promote: false,
            reason: format!(
                "rejected: {headline}, less than the required gain of {:.2} pt",
                policy.min_gain
            ),
        };
    }
    let worst = champion
        .per_class_f1
        .iter()
        .map(|(class, before)| {
            let after = challenger.per_class_f1.get(class).copied().unwrap_or(0.0);
            (class, 100.0 * (before - after), *before, after)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((class, drop, before, after)) = worst {
        if drop > policy.max_class_drop {
            return Verdict {
                promote: false,
                reason: format!(
                    "rejected: {headline}, but the F1 of class {class:?} falls {before:.4} → {after:.4} \
                     ({drop:.2} pt, more than the allowed {:.2} pt)",
                    policy.max_class_drop
                ),
            };
        }
    }
    Verdict {
        promote: true,
        reason: format!(
            "promoted: {headline}; no class's F1 fell more than {:.2} pt",
            policy.max_class_drop
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(headline: f64, classes: &[(&str, f64)]) -> Scores {
        Scores {
            headline,
            accuracy: None,
            per_class_f1: classes.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn promotes_only_a_clear_gain_without_a_class_collapsing() {
        let policy = PromotionPolicy::default();
        let champion = scores(0.80, &[("a", 0.80), ("b", 0.80)]);
        let better = scores(0.85, &[("a", 0.85), ("b", 0.85)]);
        let v = judge(&champion, &better, &policy, "macro-F1");
        assert!(v.promote, "{}", v.reason);
        assert!(v.reason.contains("+5.00 pt"), "{}", v.reason);

        let tiny = scores(0.804, &[("a", 0.804), ("b", 0.804)]);
        let v = judge(&champion, &tiny, &policy, "macro-F1");
        assert!(!v.promote);
        assert!(
            v.reason.contains("required gain of 0.50 pt"),
            "{}",
            v.reason
        );

        let lopsided = scores(0.86, &[("a", 0.95), ("b", 0.77)]);
        let v = judge(&champion, &lopsided, &policy, "macro-F1");
        assert!(!v.promote);
        assert!(v.reason.contains("class \"b\""), "{}", v.reason);

        let worse = scores(0.70, &[("a", 0.70), ("b", 0.70)]);
        assert!(!judge(&champion, &worse, &policy, "macro-F1").promote);

        let lenient = PromotionPolicy {
            min_gain: 0.5,
            max_class_drop: 5.0,
        };
        assert!(judge(&champion, &lopsided, &lenient, "macro-F1").promote);
    }
}
