//! Inline SVG charts with no script, no external file and no font file: text is SVG `<text>`,
//! laid out by the browser. Two kinds:
//!
//! * the dashboard's small charts ([`lines`], [`stacked_bars`], [`confusion`]), styled by the
//!   page's stylesheet (classes `chart`, `grid`, `tick`, `legend`, `swatch`), each with a text
//!   alternative;
//! * [`XyChart`], a general line chart over numeric axes with ticks, a legend and an optional
//!   `y = x` reference line (learning curves, ROC, precision-recall, reliability), styled by its
//!   own attributes so that it also stands alone as an `.svg` file ([`xy`], [`side_by_side`]).

use std::ops::Range;

use maud::{html, Markup};

/// Colour-blind-safe colours (Okabe–Ito), in series order.
pub const PALETTE: [&str; 7] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
];

const W: f64 = 560.0;
const H: f64 = 220.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 30.0;

/// One line of a [`lines`] chart.
pub struct Series<'a> {
    /// Legend text.
    pub name: &'a str,
    /// `(x, y)` points; non-finite ones are skipped.
    pub points: Vec<(f64, f64)>,
    /// Draw the line dashed (and say so in the legend).
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

/// `1234567` as `1,234,567` (also the dashboard's counts).
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn tick_label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 {
        count(v.round() as i64)
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
pub fn lines(title: &str, x_label: &str, series: &[Series<'_>]) -> Markup {
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
pub fn stacked_bars(
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
        count(total),
        days.len(),
        count(max)
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
                let tip = format!("{day} · {group}: {}", count(v));
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
pub fn confusion(labels: &[String], matrix: &[Vec<u64>]) -> Markup {
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

/// Width of one [`XyChart`].
pub const XY_WIDTH: f64 = 520.0;
const XY_LEFT: f64 = 62.0;
const XY_RIGHT: f64 = 18.0;
const XY_TOP: f64 = 36.0;
const XY_PLOT_H: f64 = 260.0;
const XY_LEGEND_ROW: f64 = 18.0;
const FONT: &str = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
const GRID: &str = "#e1e1e1";
const INK: &str = "#1d1d1f";
const MUTED: &str = "#555";

/// One line of an [`XyChart`]; its colour is [`PALETTE`]'s by position.
pub struct XySeries {
    /// Legend text.
    pub name: String,
    /// Points in data coordinates; non-finite ones are skipped.
    pub points: Vec<(f64, f64)>,
    /// Draw a dot at every point.
    pub markers: bool,
}

/// A titled line chart over numeric x and y axes with ticks, grid lines and a legend below.
pub struct XyChart {
    /// Title above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// X range shown (`start < end`; an empty or non-finite range shows `0..1`).
    pub x: Range<f64>,
    /// Y range shown, as `x`.
    pub y: Range<f64>,
    /// Whether x ticks are whole numbers (epochs).
    pub integer_x: bool,
    /// Whether to draw the `y = x` reference line (ROC, reliability).
    pub diagonal: bool,
    /// The lines, in legend order.
    pub series: Vec<XySeries>,
}

/// A usable axis range: `r` if finite and non-empty, else `0..1` (or `r.start..r.start + 1`).
fn usable(r: &Range<f64>) -> (f64, f64) {
    match (r.start.is_finite(), r.end.is_finite()) {
        (true, true) if r.end > r.start => (r.start, r.end),
        (true, _) => (r.start, r.start + 1.0),
        _ => (0.0, 1.0),
    }
}

/// Ticks at multiples of a round step (1, 2 or 5 times a power of ten; at least 1 when
/// `integer`), about five over `lo..=hi`, with the decimals that step needs.
fn ticks(lo: f64, hi: f64, integer: bool) -> (Vec<f64>, usize) {
    let raw = (hi - lo) / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let mut step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    if integer {
        step = step.max(1.0).round();
    }
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10() - 1e-9).ceil() as usize
    };
    let mut out = Vec::new();
    let mut k = (lo / step - 1e-9).ceil();
    while k * step <= hi + step * 1e-9 && out.len() < 50 {
        out.push(k * step + 0.0);
        k += 1.0;
    }
    (out, decimals)
}

impl XyChart {
    /// The chart's height: the plot, its axis labels and one legend row per series.
    pub fn height(&self) -> f64 {
        XY_TOP + XY_PLOT_H + 52.0 + XY_LEGEND_ROW * self.series.len() as f64
    }

    /// Where the data point `(x, y)` lands in the chart's own coordinates.
    pub fn position(&self, x: f64, y: f64) -> (f64, f64) {
        let (x0, x1) = usable(&self.x);
        let (y0, y1) = usable(&self.y);
        (
            XY_LEFT + (x - x0) / (x1 - x0) * (XY_WIDTH - XY_LEFT - XY_RIGHT),
            XY_TOP + (1.0 - (y - y0) / (y1 - y0)) * XY_PLOT_H,
        )
    }

    /// The chart's elements, without the enclosing `<svg>`.
    fn body(&self) -> Markup {
        let (x0, x1) = usable(&self.x);
        let (y0, y1) = usable(&self.y);
        let (left, right) = (XY_LEFT, XY_WIDTH - XY_RIGHT);
        let (top, bottom) = (XY_TOP, XY_TOP + XY_PLOT_H);
        let (x_ticks, x_dec) = ticks(x0, x1, self.integer_x);
        let (y_ticks, y_dec) = ticks(y0, y1, false);
        let px = |x: f64| self.position(x, y0).0;
        let py = |y: f64| self.position(x0, y).1;
        let f = |v: f64| format!("{v:.1}");
        let diagonal = (x0.max(y0), x1.min(y1));
        let legend_top = bottom + 52.0;
        html! {
            rect width=(XY_WIDTH) height=(self.height()) fill="#fff" {}
            text x=(f((left + right) / 2.0)) y="22" text-anchor="middle" font-size="16" font-weight="600" fill=(INK) {
                (self.title)
            }
            @for &t in &y_ticks {
                line x1=(left) x2=(right) y1=(f(py(t))) y2=(f(py(t))) stroke=(GRID) {}
                text x=(left - 6.0) y=(f(py(t) + 4.0)) text-anchor="end" font-size="12" fill=(MUTED) {
                    (format!("{t:.y_dec$}"))
                }
            }
            @for &t in &x_ticks {
                line x1=(f(px(t))) x2=(f(px(t))) y1=(top) y2=(bottom) stroke=(GRID) {}
                text x=(f(px(t))) y=(bottom + 16.0) text-anchor="middle" font-size="12" fill=(MUTED) {
                    (format!("{t:.x_dec$}"))
                }
            }
            rect x=(left) y=(top) width=(right - left) height=(XY_PLOT_H) fill="none" stroke="#aaa" {}
            text x=(f((left + right) / 2.0)) y=(bottom + 38.0) text-anchor="middle" font-size="14" fill=(INK) {
                (self.x_label)
            }
            text x="16" y=(f((top + bottom) / 2.0)) text-anchor="middle" font-size="14" fill=(INK)
                transform=(format!("rotate(-90 16 {})", f((top + bottom) / 2.0))) {
                (self.y_label)
            }
            @if self.diagonal && diagonal.1 > diagonal.0 {
                line x1=(f(px(diagonal.0))) y1=(f(py(diagonal.0))) x2=(f(px(diagonal.1))) y2=(f(py(diagonal.1)))
                    stroke="#aaa" stroke-dasharray="4 4" {}
            }
            @for (i, s) in self.series.iter().enumerate() {
                @let color = PALETTE[i % PALETTE.len()];
                @let points: Vec<(f64, f64)> = s.points.iter().copied()
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .map(|(x, y)| self.position(x, y))
                    .collect();
                polyline points=(points.iter().map(|&(x, y)| format!("{x:.1},{y:.1}")).collect::<Vec<_>>().join(" "))
                    fill="none" stroke=(color) stroke-width="2" stroke-linejoin="round" {}
                @if s.markers {
                    @for &(x, y) in &points {
                        circle cx=(f(x)) cy=(f(y)) r="3" fill=(color) {}
                    }
                }
            }
            @for (i, s) in self.series.iter().enumerate() {
                @let color = PALETTE[i % PALETTE.len()];
                @let y = legend_top + XY_LEGEND_ROW * i as f64;
                line x1=(left) x2=(left + 22.0) y1=(f(y - 4.0)) y2=(f(y - 4.0)) stroke=(color) stroke-width="2" {}
                @if s.markers {
                    circle cx=(left + 11.0) cy=(f(y - 4.0)) r="3" fill=(color) {}
                }
                text x=(left + 30.0) y=(f(y)) font-size="13" fill=(INK) { (s.name) }
            }
        }
    }
}

/// One chart as a standalone `<svg>` element (valid inline in HTML and as an `.svg` file).
pub fn xy(chart: &XyChart) -> Markup {
    let h = chart.height();
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(XY_WIDTH) height=(h)
            viewBox=(format!("0 0 {XY_WIDTH} {h}")) font-family=(FONT) role="img" aria-label=(chart.title) {
            (chart.body())
        }
    }
}

/// Charts in a row as one standalone `<svg>` element, as tall as the tallest.
pub fn side_by_side(charts: &[XyChart]) -> Markup {
    let w = XY_WIDTH * charts.len().max(1) as f64;
    let h = charts.iter().map(XyChart::height).fold(0.0, f64::max);
    let label = charts
        .iter()
        .map(|c| c.title.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(w) height=(h)
            viewBox=(format!("0 0 {w} {h}")) font-family=(FONT) role="img" aria-label=(label) {
            rect width=(w) height=(h) fill="#fff" {}
            @for (i, c) in charts.iter().enumerate() {
                svg x=(XY_WIDTH * i as f64) y="0" width=(XY_WIDTH) height=(c.height()) {
                    (c.body())
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
