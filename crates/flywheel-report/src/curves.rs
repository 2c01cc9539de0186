//! Learning curves from a model's training history: the series and axis ranges that the HTML
//! report and `flywheel history` draw, whatever draws them.

use std::ops::Range;

use flywheel_model::EpochRecord;

use crate::svg::{XyChart, XySeries};

/// One panel of learning curves: a metric per epoch, training and (when recorded) validation.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvePanel {
    /// Panel title (`Loss`, `Accuracy`).
    pub title: &'static str,
    /// The metric's name, for the y axis (`loss`, `accuracy`).
    pub metric: &'static str,
    /// `(legend name, (epoch, value) points)`: training first, then validation if any.
    pub series: Vec<(&'static str, Vec<(f64, f64)>)>,
    /// Epoch range shown.
    pub x: Range<f64>,
    /// Value range shown, with headroom above the curves.
    pub y: Range<f64>,
}

/// A range covering `values` with a little headroom (`0..1` when there are none).
fn padded_range(values: impl Iterator<Item = f64>, floor_zero: bool, top: f64) -> Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    if floor_zero {
        lo = lo.min(0.0);
    }
    let span = (hi - lo).max(1e-3);
    (if floor_zero { lo } else { lo - 0.08 * span })..hi + top * span
}

/// Loss (from 0) and, for classification, accuracy per epoch, training vs validation.
pub fn learning_curves(history: &[EpochRecord]) -> Vec<CurvePanel> {
    let x = if history.len() <= 1 {
        0.5..1.5
    } else {
        1.0..history.len() as f64
    };
    let pts = |f: &dyn Fn(&EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter_map(|r| f(r).map(|v| (r.epoch as f64, v)))
            .collect()
    };
    let panel =
        |title, metric, train: Vec<(f64, f64)>, val_name, val: Vec<(f64, f64)>, from_zero| {
            let y = padded_range(train.iter().chain(&val).map(|p| p.1), from_zero, 0.3);
            let mut series = vec![(metric, train)];
            if !val.is_empty() {
                series.push((val_name, val));
            }
            CurvePanel {
                title,
                metric,
                series,
                x: x.clone(),
                y,
            }
        };
    let mut panels = vec![panel(
        "Loss",
        "loss",
        pts(&|r| Some(r.loss)),
        "val_loss",
        pts(&|r| r.val_loss),
        true,
    )];
    let accuracy = pts(&|r| r.accuracy);
    if !accuracy.is_empty() {
        panels.push(panel(
            "Accuracy",
            "accuracy",
            accuracy,
            "val_accuracy",
            pts(&|r| r.val_accuracy),
            false,
        ));
    }
    panels
}

impl From<&CurvePanel> for XyChart {
    /// The panel as a chart with a dot per epoch.
    fn from(p: &CurvePanel) -> Self {
        XyChart {
            title: p.title.to_string(),
            x_label: "epoch".to_string(),
            y_label: p.metric.to_string(),
            x: p.x.clone(),
            y: p.y.clone(),
            integer_x: true,
            diagonal: false,
            series: p
                .series
                .iter()
                .map(|(name, points)| XySeries {
                    name: (*name).to_string(),
                    points: points.clone(),
                    markers: true,
                })
                .collect(),
        }
    }
}

/// The learning curves as charts, side by side in one SVG document.
pub fn learning_curves_svg(history: &[EpochRecord]) -> String {
    let charts: Vec<XyChart> = learning_curves(history).iter().map(XyChart::from).collect();
    crate::svg::side_by_side(&charts).into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: usize, loss: f64, accuracy: Option<f64>, val: Option<f64>) -> EpochRecord {
        EpochRecord {
            epoch,
            loss,
            accuracy,
            val_loss: val,
            val_accuracy: val.map(|v| 1.0 - v),
        }
    }

    #[test]
    fn panels_follow_the_history() {
        let h = [
            record(1, 0.8, Some(0.6), Some(0.75)),
            record(2, 0.4, Some(0.9), Some(0.5)),
        ];
        let p = learning_curves(&h);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].series[0], ("loss", vec![(1.0, 0.8), (2.0, 0.4)]));
        assert_eq!(p[0].series[1].0, "val_loss");
        assert_eq!(p[0].x, 1.0..2.0);
        // Loss starts at 0 and leaves 30% headroom above the highest point.
        assert_eq!(p[0].y.start, 0.0);
        assert!((p[0].y.end - 1.04).abs() < 1e-9, "{:?}", p[0].y);
        assert_eq!(
            p[1].series[1],
            ("val_accuracy", vec![(1.0, 0.25), (2.0, 0.5)])
        );
        assert!(p[1].y.start < 0.25 && p[1].y.end > 0.9);
    }

    #[test]
    fn regression_and_single_epoch() {
        let p = learning_curves(&[record(1, 2.0, None, None)]);
        assert_eq!(p.len(), 1, "no accuracy panel without accuracy");
        assert_eq!(
            p[0].series.len(),
            1,
            "no validation series without validation"
        );
        assert_eq!(p[0].x, 0.5..1.5);
        let svg = learning_curves_svg(&[record(1, 2.0, None, None)]);
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    }
}
