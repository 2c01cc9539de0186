//! Small inline SVG charts (no script, no external files): learning curves, stacked daily bars
//! and the confusion matrix. Each carries a text alternative; the numbers are also in tables.

use maud::{html, Markup};

/// Colour-blind-safe colours (Okabe–Ito), in series order.
pub(super) const PALETTE: [&str; 7] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
];

const W: f64 = 560.0;
const H: f64 = 220.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 30.0;

/// One line of a line chart.
pub(super) struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

/// Rounds `max` up to a "nice" axis end (1, 2 or 5 times a power of ten).
fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if max <= step * magnitude {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn tick_label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 {
        super::view::count(v.round() as i64)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A line chart of `series` over a shared x axis (epochs), y from 0 (or the data's minimum
/// when it is negative) to a rounded maximum.
pub(super) fn lines(title: &str, x_label: &str, series: &[Series<'_>]) -> Markup {
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, 0.0f64, f64::MIN);
    for &(x, y) in all.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return html! { p.muted { "No " (title.to_lowercase()) " recorded." } };
    }
    if x1 == x0 {
        x1 = x0 + 1.0;
    }
    let y1 = nice_ceiling(y1);
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT);
    let sy = |y: f64| TOP + (1.0 - (y - y0) / (y1 - y0)) * (H - TOP - BOTTOM);
    let ticks: Vec<f64> = (0..=4)
        .map(|i| y0 + (y1 - y0) * f64::from(i) / 4.0)
        .collect();
    let described = series
        .iter()
        .map(|s| match s.points.last() {
            Some((_, y)) => format!("{} ends at {}", s.name, tick_label(*y)),
            None => s.name.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    html! {
        figure.chart {
            figcaption { (title) }
            svg viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(format!("{title}: {described}")) {
                @for t in &ticks {
                    line.grid x1=(LEFT) x2=(W - RIGHT) y1=(sy(*t)) y2=(sy(*t)) {}
                    text.tick x=(LEFT - 6.0) y=(sy(*t) + 4.0) text-anchor="end" { (tick_label(*t)) }
                }
                text.tick x=(LEFT) y=(H - 8.0) { (tick_label(x0)) }
                text.tick x=(W - RIGHT) y=(H - 8.0) text-anchor="end" { (tick_label(x1)) }
                text.tick x=((LEFT + W - RIGHT) / 2.0) y=(H - 8.0) text-anchor="middle" { (x_label) }
                @for (i, s) in series.iter().enumerate() {
                    @let points = s.points.iter()
                        .filter(|(x, y)| x.is_finite() && y.is_finite())
                        .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                        .collect::<Vec<_>>().join(" ");
                    polyline points=(points) fill="none" stroke=(PALETTE[i % PALETTE.len()])
                        stroke-width="2" stroke-dasharray=[s.dashed.then_some("5 4")] {}
                }
            }
            ul.legend {
                @for (i, s) in series.iter().enumerate() {
                    li {
                        span.swatch style=(format!("background:{}", PALETTE[i % PALETTE.len()])) {}
                        (s.name) @if s.dashed { " (dashed)" }
                    }
                }
            }
        }
    }
}

/// Stacked bars: one bar per day, one segment per group. `values[g][d]` is group `g` on day `d`.
pub(super) fn stacked_bars(
    title: &str,
    days: &[String],
    groups: &[String],
    values: &[Vec<i64>],
) -> Markup {
    let totals: Vec<i64> = (0..days.len())
        .map(|d| values.iter().map(|g| g.get(d).copied().unwrap_or(0)).sum())
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0);
    if days.is_empty() || max == 0 {
        return html! { p.muted { "No usage in this period." } };
    }
    let top = nice_ceiling(max as f64);
    let plot_w = W - LEFT - RIGHT;
    let slot = plot_w / days.len() as f64;
    let bar = (slot * 0.8).max(1.0);
    let sy = |v: f64| TOP + (1.0 - v / top) * (H - TOP - BOTTOM);
    let ticks: Vec<f64> = (0..=4).map(|i| top * f64::from(i) / 4.0).collect();
    let total: i64 = totals.iter().sum();
    let label = format!(
        "{title}: {} in all over {} days, most on one day {}",
        super::view::count(total),
        days.len(),
        super::view::count(max)
    );
    let every = days.len().div_ceil(8).max(1);
    let mut segments = Vec::new();
    for (d, day) in days.iter().enumerate() {
        let x = LEFT + slot * d as f64 + (slot - bar) / 2.0;
        let mut base = 0i64;
        for (g, group) in groups.iter().enumerate() {
            let v = values.get(g).and_then(|r| r.get(d)).copied().unwrap_or(0);
            if v > 0 {
                let (y_top, y_bottom) = (sy((base + v) as f64), sy(base as f64));
                let tip = format!("{day} · {group}: {}", super::view::count(v));
                let color = PALETTE[g % PALETTE.len()];
                segments.push((x, y_top, (y_bottom - y_top).max(0.5), color, tip));
            }
            base += v;
        }
    }
    html! {
        figure.chart {
            figcaption { (title) }
            svg viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(label) {
                @for t in &ticks {
                    line.grid x1=(LEFT) x2=(W - RIGHT) y1=(sy(*t)) y2=(sy(*t)) {}
                    text.tick x=(LEFT - 6.0) y=(sy(*t) + 4.0) text-anchor="end" { (tick_label(*t)) }
                }
                @for (x, y, h, color, tip) in &segments {
                    rect x=(format!("{x:.1}")) y=(format!("{y:.1}")) width=(format!("{bar:.1}"))
                        height=(format!("{h:.1}")) fill=(color) {
                        title { (tip) }
                    }
                }
                @for (d, day) in days.iter().enumerate().step_by(every) {
                    text.tick x=(format!("{:.1}", LEFT + slot * (d as f64 + 0.5))) y=(H - 8.0) text-anchor="middle" {
                        (day.get(5..).unwrap_or(day))
                    }
                }
            }
            ul.legend {
                @for (g, group) in groups.iter().enumerate() {
                    li {
                        span.swatch style=(format!("background:{}", PALETTE[g % PALETTE.len()])) {}
                        (group)
                    }
                }
            }
        }
    }
}

/// The confusion matrix as a table shaded by each row's share (true class per row).
pub(super) fn confusion(labels: &[String], matrix: &[Vec<u64>]) -> Markup {
    html! {
        div.scroll {
            table.confusion {
                caption { "Confusion matrix (rows: true label, columns: predicted)" }
                thead {
                    tr {
                        th scope="col" { "true \\ predicted" }
                        @for l in labels { th scope="col" { (l) } }
                    }
                }
                tbody {
                    @for (i, row) in matrix.iter().enumerate() {
                        @let total: u64 = row.iter().sum();
                        tr {
                            th scope="row" { (labels.get(i).map(String::as_str).unwrap_or("?")) }
                            @for (j, n) in row.iter().enumerate() {
                                @let share = if total > 0 { *n as f64 / total as f64 } else { 0.0 };
                                @let hue = if i == j { "0,114,178" } else { "213,94,0" };
                                td style=(format!("background:rgba({hue},{:.2})", share * 0.85))
                                    class=[(share > 0.55).then_some("dark")] {
                                    (n)
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_ends_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.73), 1.0);
        assert_eq!(nice_ceiling(1.2), 2.0);
        assert_eq!(nice_ceiling(37.0), 50.0);
        assert_eq!(nice_ceiling(1000.0), 1000.0);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
    }

    #[test]
    fn charts_render_their_data() {
        let s = [Series {
            name: "loss",
            points: vec![(1.0, 0.7), (2.0, 0.4)],
            dashed: false,
        }];
        let svg = lines("Loss", "epoch", &s).into_string();
        assert!(svg.contains("<polyline"), "{svg}");
        assert!(svg.contains("loss ends at 0.40"), "{svg}");
        let empty = lines("Loss", "epoch", &[]).into_string();
        assert!(empty.contains("No loss recorded"));

        let days = vec!["2026-12-01".to_string(), "2026-12-02".to_string()];
        let groups = vec!["a".to_string(), "b".to_string()];
        let bars = stacked_bars("Texts", &days, &groups, &[vec![3, 0], vec![1, 2]]).into_string();
        assert_eq!(bars.matches("<rect").count(), 3, "{bars}");
        assert!(bars.contains("6 in all over 2 days"));
        let none = stacked_bars("Texts", &days, &groups, &[vec![0, 0]]).into_string();
        assert!(none.contains("No usage"));

        let m = confusion(&groups, &[vec![5, 1], vec![0, 4]]).into_string();
        assert_eq!(m.matches("<td").count(), 4);
    }
}
