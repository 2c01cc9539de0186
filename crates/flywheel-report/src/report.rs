//! The evaluation report (`flywheel eval MODEL DATA --report FILE.html`): one self-contained
//! HTML page (inline CSS and SVG, no scripts, no network, no font file) with the metrics table,
//! confusion-matrix heatmap, learning curves, ROC and precision-recall curves (one-vs-rest for
//! more than two classes), a reliability diagram and the 20 most confident mistakes with their
//! explanations highlighted.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use flywheel_data::Record;
use flywheel_model::curves::{pr_curve, reliability, roc_curve, Curve};
use flywheel_model::task::Targets;
use flywheel_model::{explain, Artifact, Explanation, ModelError, Report, Task};

use crate::curves::learning_curves;
use crate::svg::{self, XyChart, XySeries};

/// Mistakes listed in the report.
const MISTAKES: usize = 20;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The rows do not fit the model (labels it does not know), or explaining a row failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The page could not be written.
    #[error("writing the report {}", path.display())]
    Write {
        /// Where it was to be written.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
}

/// What the report is about.
pub struct ReportInput<'a> {
    /// The model.
    pub artifact: &'a Artifact,
    /// Its file name, for the heading.
    pub model_name: &'a str,
    /// The evaluated data's name.
    pub data_name: &'a str,
    /// The labelled rows.
    pub records: &'a [Record],
    /// The metrics.
    pub report: &'a Report,
    /// Model outputs `[rows, outputs]` (probabilities or values).
    pub outputs: &'a [f32],
}

/// Writes the report to `path`.
pub fn write_report(input: &ReportInput<'_>, path: &Path) -> Result<(), ReportError> {
    let html = render(input)?;
    std::fs::write(path, html).map_err(|source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Charts as inline SVG, one `<svg>` each, side by side where the page is wide enough.
fn chart_html(charts: &[XyChart]) -> String {
    let mut out = String::from("<div class=\"chart row\">");
    for c in charts {
        out.push_str(&svg::xy(c).into_string());
    }
    out.push_str("</div>");
    out
}

/// Drops points closer than `eps` to the previous kept one (keeps the ends), so curves over
/// thousands of thresholds stay small.
fn thin(points: &[(f64, f64)], eps: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (i, &p) in points.iter().enumerate() {
        let keep = match out.last() {
            None => true,
            Some(&q) => i + 1 == points.len() || (p.0 - q.0).abs() + (p.1 - q.1).abs() > eps,
        };
        if keep {
            out.push(p);
        }
    }
    out
}

/// Per-row class probabilities, true class and predicted class (single-label tasks only).
struct ClassRows {
    probs: Vec<Vec<f32>>,
    truth: Vec<usize>,
    pred: Vec<usize>,
}

fn class_rows(input: &ReportInput<'_>) -> Result<Option<ClassRows>, ModelError> {
    let pipeline = &input.artifact.pipeline;
    let task = pipeline.labels.task;
    if !matches!(task, Task::Binary | Task::Multiclass) {
        return Ok(None);
    }
    let targets = pipeline.labels.encode(input.records, input.data_name)?;
    let k = pipeline.labels.outputs();
    let probs: Vec<Vec<f32>> = match task {
        Task::Binary => input.outputs.iter().map(|&p| vec![1.0 - p, p]).collect(),
        _ => input.outputs.chunks_exact(k).map(<[f32]>::to_vec).collect(),
    };
    let truth: Vec<usize> = match targets {
        Targets::Classes(c) => c.iter().map(|&c| c as usize).collect(),
        Targets::Values(v) => v.iter().map(|&v| usize::from(v > 0.5)).collect(),
    };
    let pred = probs
        .iter()
        .map(|r| flywheel_model::metrics::argmax(r))
        .collect();
    Ok(Some(ClassRows { probs, truth, pred }))
}

/// The report as one HTML page.
pub fn render(input: &ReportInput<'_>) -> Result<String, ReportError> {
    let a = input.artifact;
    let labels = &a.pipeline.labels.labels;
    let mut h = String::new();
    let title = format!(
        "flywheel report: {} on {}",
        input.model_name, input.data_name
    );
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    let _ = writeln!(
        h,
        "<p class=\"meta\">{} rows &middot; task {} &middot; labels {} &middot; model created {} \
         &middot; {} (embed {}, hidden {}, max_len {}) &middot; flywheel {}</p>",
        input.records.len(),
        a.meta.task,
        esc(&labels.join(", ")),
        esc(&a.meta.created_at),
        esc(a.meta.spec.family.name()),
        a.meta.spec.embed_dim,
        a.meta.spec.hidden,
        a.meta.spec.max_len,
        esc(&a.meta.flywheel_version)
    );
    h.push_str("<nav><a href=\"#metrics\">Metrics</a> <a href=\"#confusion\">Confusion matrix</a> \
                <a href=\"#curves\">Learning curves</a> <a href=\"#roc\">ROC &amp; PR</a> \
                <a href=\"#calibration\">Calibration</a> <a href=\"#mistakes\">Mistakes</a></nav>\n");

    // Metrics.
    h.push_str("<section id=\"metrics\"><h2>Metrics</h2>\n");
    match input.report {
        Report::Classification(r) => {
            h.push_str(
                "<table class=\"num\"><tr><th>label</th><th>precision</th><th>recall</th>\
                        <th>F1</th><th>support</th></tr>\n",
            );
            for name in &r.labels {
                if let Some(m) = r.per_class.get(name) {
                    let _ = writeln!(
                        h,
                        "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td></tr>",
                        esc(name),
                        m.precision,
                        m.recall,
                        m.f1,
                        m.support
                    );
                }
            }
            let n = r.labels.len().max(1) as f64;
            let mean = |f: &dyn Fn(&flywheel_model::metrics::ClassMetrics) -> f64| {
                r.per_class.values().map(f).sum::<f64>() / n
            };
            let _ = writeln!(
                h,
                "<tr class=\"sum\"><td>macro avg</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td></tr>",
                mean(&|m| m.precision),
                mean(&|m| m.recall),
                r.macro_f1,
                r.n
            );
            h.push_str("</table>\n<table class=\"num kv\">");
            let _ = write!(h, "<tr><td>accuracy</td><td>{:.4}</td></tr>", r.accuracy);
            let _ = write!(h, "<tr><td>macro F1</td><td>{:.4}</td></tr>", r.macro_f1);
            let _ = write!(
                h,
                "<tr><td>weighted F1</td><td>{:.4}</td></tr>",
                r.weighted_f1
            );
            if let Some(v) = r.roc_auc {
                let _ = write!(h, "<tr><td>ROC-AUC</td><td>{v:.4}</td></tr>");
            }
            if let Some(v) = r.log_loss {
                let _ = write!(h, "<tr><td>log loss</td><td>{v:.4}</td></tr>");
            }
            h.push_str("</table>\n");
        }
        other => {
            let _ = writeln!(h, "<pre>{}</pre>", esc(&other.render_text()));
        }
    }
    h.push_str("</section>\n");

    // Confusion matrix.
    if let Report::Classification(r) = input.report {
        h.push_str("<section id=\"confusion\"><h2>Confusion matrix</h2>\n\
                    <p class=\"note\">Rows: true label; columns: predicted label. Colour: share of the row.</p>\n\
                    <table class=\"cm\"><tr><th>true \\ predicted</th>");
        for name in &r.labels {
            let _ = write!(h, "<th>{}</th>", esc(name));
        }
        h.push_str("</tr>\n");
        for (name, row) in r.labels.iter().zip(&r.confusion_matrix) {
            let total: u64 = row.iter().sum();
            let _ = write!(h, "<tr><th>{}</th>", esc(name));
            for &c in row {
                let share = if total > 0 {
                    c as f64 / total as f64
                } else {
                    0.0
                };
                let mix = |w: f64, c: f64| (255.0 + (c - 255.0) * w).round() as u8;
                let (rr, gg, bb) = (mix(share, 31.0), mix(share, 119.0), mix(share, 180.0));
                let fg = if share > 0.5 { "#fff" } else { "#111" };
                let _ = write!(
                    h,
                    "<td style=\"background:rgb({rr},{gg},{bb});color:{fg}\">{c}<br><small>{:.1}%</small></td>",
                    share * 100.0
                );
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table></section>\n");
    }

    // Learning curves.
    h.push_str("<section id=\"curves\"><h2>Learning curves</h2>\n");
    match &a.meta.training {
        Some(t) if !t.history.is_empty() => {
            let charts: Vec<XyChart> = learning_curves(&t.history)
                .iter()
                .map(XyChart::from)
                .collect();
            h.push_str(&chart_html(&charts));
            if let Some(b) = t.best_epoch {
                let _ = writeln!(h, "<p class=\"note\">Weights kept from epoch {b}.</p>");
            }
        }
        _ => h.push_str("<p>The model file holds no training history.</p>\n"),
    }
    h.push_str("</section>\n");

    let rows = class_rows(input)?;
    match &rows {
        Some(rows) => {
            render_threshold_curves(&mut h, labels, rows);
            render_calibration(&mut h, rows);
            render_mistakes(&mut h, input, labels, rows)?;
        }
        None => h.push_str(
            "<section id=\"roc\"><p>ROC, precision-recall, calibration and mistakes are shown \
             for binary and multi-class models.</p></section>\n",
        ),
    }
    h.push_str(
        "<footer>Generated by flywheel. Attributions: occlusion (drop of the predicted \
                label's probability when the token is removed); green supports the prediction, \
                red speaks against it.</footer>\n</body></html>\n",
    );
    Ok(h)
}

fn render_threshold_curves(h: &mut String, labels: &[String], rows: &ClassRows) {
    let binary = labels.len() == 2;
    let classes: Vec<usize> = if binary {
        vec![1]
    } else {
        (0..labels.len()).collect()
    };
    let mut roc = Vec::new();
    let mut pr = Vec::new();
    for &c in &classes {
        let y: Vec<bool> = rows.truth.iter().map(|&t| t == c).collect();
        let s: Vec<f32> = rows.probs.iter().map(|p| p[c]).collect();
        let name = |what: &str, curve: &Curve| {
            if binary {
                format!("{} ({what} {:.3})", labels[c], curve.area)
            } else {
                format!("{} vs rest ({what} {:.3})", labels[c], curve.area)
            }
        };
        if let Some(curve) = roc_curve(&y, &s) {
            roc.push(XySeries {
                name: name("AUC", &curve),
                points: thin(&curve.points, 0.004),
                markers: false,
            });
        }
        if let Some(curve) = pr_curve(&y, &s) {
            pr.push(XySeries {
                name: name("AP", &curve),
                points: thin(&curve.points, 0.004),
                markers: false,
            });
        }
    }
    h.push_str("<section id=\"roc\"><h2>ROC and precision-recall curves</h2>\n");
    if !binary {
        h.push_str("<p class=\"note\">One curve per label, that label against the rest.</p>\n");
    }
    let charts = vec![
        XyChart {
            title: "ROC curve".into(),
            x_label: "false positive rate".into(),
            y_label: "true positive rate".into(),
            x: 0.0..1.0,
            y: 0.0..1.02,
            series: roc,
            diagonal: true,
            integer_x: false,
        },
        XyChart {
            title: "Precision-recall curve".into(),
            x_label: "recall".into(),
            y_label: "precision".into(),
            x: 0.0..1.0,
            y: 0.0..1.02,
            series: pr,
            diagonal: false,
            integer_x: false,
        },
    ];
    h.push_str(&chart_html(&charts));
    h.push_str("</section>\n");
}

fn render_calibration(h: &mut String, rows: &ClassRows) {
    let conf: Vec<f32> = rows
        .probs
        .iter()
        .zip(&rows.pred)
        .map(|(p, &c)| p[c])
        .collect();
    let ok: Vec<bool> = rows
        .pred
        .iter()
        .zip(&rows.truth)
        .map(|(p, t)| p == t)
        .collect();
    let (bins, ece) = reliability(&conf, &ok, 10);
    let chart = XyChart {
        title: "Reliability diagram".into(),
        x_label: "confidence (probability of the predicted label)".into(),
        y_label: "accuracy".into(),
        x: 0.0..1.0,
        y: 0.0..1.02,
        series: vec![XySeries {
            name: format!("model (ECE {ece:.3})"),
            points: bins.iter().map(|b| (b.confidence, b.accuracy)).collect(),
            markers: true,
        }],
        diagonal: true,
        integer_x: false,
    };
    h.push_str(
        "<section id=\"calibration\"><h2>Calibration</h2>\n<p class=\"note\">Predictions \
                grouped into 10 confidence bins; a calibrated model lies on the diagonal. ECE = \
                expected calibration error.</p>\n<div class=\"row\">",
    );
    h.push_str(&chart_html(&[chart]));
    h.push_str("<table class=\"num\"><tr><th>confidence bin</th><th>rows</th><th>mean confidence</th><th>accuracy</th></tr>");
    for b in &bins {
        let _ = write!(
            h,
            "<tr><td>{:.1}–{:.1}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            b.lo, b.hi, b.count, b.confidence, b.accuracy
        );
    }
    h.push_str("</table></div></section>\n");
}

/// The text with each token's background coloured by its attribution.
fn highlighted(text: &str, e: &Explanation) -> String {
    let max = e
        .tokens
        .iter()
        .map(|t| t.attribution.abs())
        .fold(0.0f32, f32::max);
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut at = 0;
    for t in &e.tokens {
        let gap: String = chars[at.min(t.start)..t.start].iter().collect();
        out.push_str(&esc(&gap));
        let seg: String = chars[t.start..t.end].iter().collect();
        let s = if max > 0.0 {
            t.attribution.abs() / max
        } else {
            0.0
        };
        if s < 0.05 {
            out.push_str(&esc(&seg));
        } else {
            let (r, g, b) = if t.attribution > 0.0 {
                (44, 160, 44)
            } else {
                (214, 39, 40)
            };
            let _ = write!(
                out,
                "<span class=\"tok\" style=\"background:rgba({r},{g},{b},{:.2})\" title=\"{:+.4}\">{}</span>",
                0.15 + 0.7 * s,
                t.attribution,
                esc(&seg)
            );
        }
        at = t.end;
    }
    let rest: String = chars[at.min(chars.len())..].iter().collect();
    out.push_str(&esc(&rest));
    out
}

fn render_mistakes(
    h: &mut String,
    input: &ReportInput<'_>,
    labels: &[String],
    rows: &ClassRows,
) -> Result<(), ModelError> {
    let mut wrong: Vec<(usize, f32)> = (0..rows.truth.len())
        .filter(|&i| rows.pred[i] != rows.truth[i])
        .map(|i| (i, rows.probs[i][rows.pred[i]]))
        .collect();
    wrong.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let _ = writeln!(
        h,
        "<section id=\"mistakes\"><h2>The {} most confident mistakes</h2>\n<p class=\"note\">{} of \
         {} rows are wrong. Highlight: each token's occlusion attribution to the <em>predicted</em> \
         label (green: pushed towards it, red: against it; hover for the value).</p>",
        MISTAKES.min(wrong.len()),
        wrong.len(),
        rows.truth.len()
    );
    h.push_str(
        "<table class=\"mistakes\"><tr><th>#</th><th>line</th><th>true</th><th>predicted</th>\
                <th>confidence</th><th>text</th></tr>\n",
    );
    for (rank, &(i, conf)) in wrong.iter().take(MISTAKES).enumerate() {
        let rec = &input.records[i];
        let e = explain(&input.artifact.pipeline, &rec.text)?;
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{conf:.3}</td><td class=\"text\">{}</td></tr>",
            rank + 1,
            rec.line,
            esc(&labels[rows.truth[i]]),
            esc(&labels[rows.pred[i]]),
            highlighted(&rec.text, &e)
        );
    }
    h.push_str("</table></section>\n");
    Ok(())
}

pub(crate) const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;\
margin:24px auto;max-width:1120px;padding:0 16px;color:#1d1d1f;background:#fff}\
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}\
.meta,.note{color:#555;font-size:.9em}nav a{margin-right:14px;font-size:.9em}\
table{border-collapse:collapse;margin:8px 16px 8px 0;display:inline-table;vertical-align:top}\
th,td{border:1px solid #ddd;padding:4px 8px}th{background:#f5f5f7;text-align:left}\
table.num td{text-align:right}table.num td:first-child{text-align:left}tr.sum td{font-weight:600}\
table.cm td{text-align:center;min-width:72px}table.cm small{opacity:.8}\
.chart{overflow-x:auto}.chart svg{max-width:100%;height:auto}.row{display:flex;flex-wrap:wrap;align-items:flex-start;gap:8px}\
table.mistakes{display:table;width:100%}table.mistakes td.text{line-height:1.7}\
.tok{border-radius:3px;padding:1px 2px}footer{margin:32px 0;color:#777;font-size:.85em}";

#[cfg(test)]
mod tests {
    use super::*;
    use flywheel_model::TokenAttribution;

    #[test]
    fn escapes_and_highlights() {
        let text = "<b>好</b> ok";
        let e = Explanation {
            label: "x".into(),
            score: 0.9,
            method: "occlusion".into(),
            tokens: vec![
                TokenAttribution {
                    text: "b".into(),
                    start: 1,
                    end: 2,
                    attribution: -0.1,
                    in_vocabulary: true,
                    truncated: false,
                },
                TokenAttribution {
                    text: "好".into(),
                    start: 3,
                    end: 4,
                    attribution: 0.4,
                    in_vocabulary: true,
                    truncated: false,
                },
            ],
        };
        let h = highlighted(text, &e);
        assert!(h.starts_with("&lt;<span"));
        assert!(h.contains("title=\"+0.4000\">好</span>&lt;/b&gt; ok"));
    }

    #[test]
    fn thins_curves() {
        let pts: Vec<(f64, f64)> = (0..=1000).map(|i| (i as f64 / 1000.0, 0.5)).collect();
        let t = thin(&pts, 0.01);
        assert!(t.len() < 120);
        assert_eq!(t.first(), Some(&(0.0, 0.5)));
        assert_eq!(t.last(), Some(&(1.0, 0.5)));
    }
}
