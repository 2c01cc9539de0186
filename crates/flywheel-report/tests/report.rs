//! The report of a small fastText model trained here on synthetic rows (no downloads): every
//! section, one `<svg>` per chart, no script; and the XY chart's escaping and coordinates.

use flywheel_data::Record;
use flywheel_model::{evaluate, train, Artifact, ModelSpec, TrainConfig};
use flywheel_report::svg::{self, XyChart, XySeries};
use flywheel_report::{render, write_report, ReportError, ReportInput};

/// Texts of filler words plus one cue word per label; every fifth row's cue is the other
/// label's, so there are mistakes to list.
fn rows(n: usize, classes: &[&str]) -> Vec<Record> {
    let mut x = 7u64;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    (0..n)
        .map(|i| {
            let c = i % classes.len();
            let cue = if i % 5 == 0 {
                (c + 1) % classes.len()
            } else {
                c
            };
            let mut words: Vec<String> = (0..6).map(|_| format!("w{}", next(30))).collect();
            words.insert(next(6) as usize, format!("cue{cue}"));
            Record {
                text: words.join(" "),
                labels: vec![classes[c].to_string()],
                line: i as u64 + 2,
            }
        })
        .collect()
}

fn model(records: &[Record]) -> Artifact {
    let mut spec = ModelSpec::fasttext();
    spec.embed_dim = 8;
    spec.bag.buckets = 1000;
    let cfg = TrainConfig {
        epochs: 4,
        lr: Some(0.5),
        validation_split: 0.2,
        ..TrainConfig::default()
    };
    let out = train(records, "mem", None, "|", &spec, &cfg, &mut |_| {}).unwrap();
    Artifact::from_training(out, cfg, "train.csv", "00")
}

fn report_of(classes: &[&str]) -> String {
    let records = rows(200, classes);
    let artifact = model(&records);
    let report = evaluate(&artifact.pipeline, &records, "mem").unwrap();
    let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
    let outputs = artifact.pipeline.outputs_of_texts(&texts).unwrap();
    let input = ReportInput {
        artifact: &artifact,
        model_name: "m<1>.fw",
        data_name: "rows & more",
        records: &records,
        report: &report,
        outputs: &outputs,
    };
    let html = render(&input).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.html");
    write_report(&input, &path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), html);
    html
}

#[test]
fn report_has_every_section_and_one_svg_per_chart() {
    let html = report_of(&["neg", "pos"]);
    for needle in [
        "<title>flywheel report: m&lt;1&gt;.fw on rows &amp; more</title>",
        "id=\"metrics\"",
        "<td>macro avg</td>",
        "id=\"confusion\"",
        "<table class=\"cm\">",
        "id=\"curves\"",
        "id=\"roc\"",
        "id=\"calibration\"",
        "confidence bin",
        "id=\"mistakes\"",
        "most confident mistakes",
        "class=\"tok\"",
        "</html>",
    ] {
        assert!(html.contains(needle), "report lacks {needle}");
    }
    // Loss, accuracy, ROC, precision-recall, reliability: five charts, five `<svg>`s, each
    // with its title as SVG text.
    assert_eq!(html.matches("<svg").count(), 5);
    for title in [
        ">Loss</text>",
        ">Accuracy</text>",
        ">ROC curve</text>",
        ">Precision-recall curve</text>",
        ">Reliability diagram</text>",
    ] {
        assert!(html.contains(title), "report lacks {title}");
    }
    // A binary model: one ROC and one PR curve, for the positive label.
    assert!(html.contains(">pos (AUC "));
    assert!(html.contains(">pos (AP "));
    for bad in ["<script", "src=\"http", "href=\"http", "<link", "@import"] {
        assert!(!html.contains(bad), "report contains {bad}");
    }
}

#[test]
fn multiclass_report_draws_one_vs_rest_curves() {
    let html = report_of(&["a", "b", "c"]);
    assert_eq!(html.matches("<svg").count(), 5);
    for label in ["a", "b", "c"] {
        assert!(html.contains(&format!(">{label} vs rest (AUC ")), "{label}");
        assert!(html.contains(&format!(">{label} vs rest (AP ")), "{label}");
    }
    assert!(!html.contains("<script"));
}

#[test]
fn unknown_labels_and_unwritable_paths_are_typed_errors() {
    let records = rows(100, &["neg", "pos"]);
    let artifact = model(&records);
    let report = evaluate(&artifact.pipeline, &records, "mem").unwrap();
    let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
    let outputs = artifact.pipeline.outputs_of_texts(&texts).unwrap();
    let mut other = records.clone();
    other[3].labels = vec!["maybe".into()];
    let input = ReportInput {
        artifact: &artifact,
        model_name: "m.fw",
        data_name: "d.csv",
        records: &other,
        report: &report,
        outputs: &outputs,
    };
    assert!(matches!(render(&input), Err(ReportError::Model(_))));
    let input = ReportInput {
        records: &records,
        ..input
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("report.html");
    let err = write_report(&input, &path).unwrap_err();
    assert!(matches!(err, ReportError::Write { .. }));
    assert!(err.to_string().contains("report.html"), "{err}");
}

#[test]
fn xy_chart_escapes_text_and_maps_points() {
    let chart = XyChart {
        title: "<b>ROC</b> & \"more\"".into(),
        x_label: "x<".into(),
        y_label: "y>".into(),
        x: 0.0..1.0,
        y: 0.0..1.0,
        integer_x: false,
        diagonal: true,
        series: vec![XySeries {
            name: "a&b".into(),
            points: vec![(0.0, 0.0), (0.5, 0.5), (1.0, f64::NAN), (1.0, 1.0)],
            markers: true,
        }],
    };
    // The plot spans x 62..502 and y 36..296: (0.5, 0.5) is its centre.
    assert_eq!(chart.position(0.5, 0.5), (282.0, 166.0));
    assert_eq!(chart.position(0.0, 1.0), (62.0, 36.0));
    let s = svg::xy(&chart).into_string();
    assert!(s.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(
        s.contains(">&lt;b&gt;ROC&lt;/b&gt; &amp; &quot;more&quot;</text>"),
        "{s}"
    );
    assert!(s.contains(">x&lt;</text>") && s.contains(">y&gt;</text>"));
    assert!(s.contains(">a&amp;b</text>"));
    assert!(!s.contains("<b>"));
    // The NaN point is skipped; the others are where `position` says.
    assert!(
        s.contains("points=\"62.0,296.0 282.0,166.0 502.0,36.0\""),
        "{s}"
    );
    assert!(s.contains("<circle cx=\"282.0\" cy=\"166.0\""));
    // Ticks 0, 0.2, ..., 1 on both axes, labelled with one decimal.
    for t in ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"] {
        assert_eq!(s.matches(&format!(">{t}</text>")).count(), 2, "tick {t}");
    }
    // The diagonal runs from the bottom-left corner to the top-right one.
    assert!(s.contains("x1=\"62.0\" y1=\"296.0\" x2=\"502.0\" y2=\"36.0\""));
}

#[test]
fn side_by_side_places_charts_in_a_row() {
    let chart = |title: &str| XyChart {
        title: title.into(),
        x_label: "epoch".into(),
        y_label: "loss".into(),
        x: 1.0..3.0,
        y: 0.0..1.0,
        integer_x: true,
        diagonal: false,
        series: vec![],
    };
    let s = svg::side_by_side(&[chart("Loss"), chart("Accuracy")]).into_string();
    assert_eq!(
        s.matches("<svg").count(),
        3,
        "one document holding two charts"
    );
    assert!(s.contains("<svg x=\"520\""));
    assert!(s.contains(">Loss</text>") && s.contains(">Accuracy</text>"));
    // Whole epochs only: 1, 2, 3 on each chart's x axis.
    assert!(!s.contains(">1.5</text>"));
    assert_eq!(s.matches(">2</text>").count(), 2);
}
