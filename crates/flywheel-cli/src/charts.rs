//! Learning curves as a PNG file (`flywheel history --png FILE.png`), drawn with `plotters`.
//! The HTML report and `.svg` files use `flywheel_report::svg`, which needs no font.
//!
//! Text in a PNG needs a TrueType font at run time: `FLYWHEEL_FONT` if set, else the first of a
//! few common system fonts (DejaVu Sans, Liberation Sans, FreeSans, Noto Sans, Arial).
//! Debian/Ubuntu: `apt-get install fonts-dejavu-core`.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use flywheel_model::EpochRecord;
use flywheel_report::curves::{self, CurvePanel};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Font family name the charts use (registered by [`ensure_font`]).
const FAMILY: &str = "sans-serif";

/// Places where a sans-serif TrueType font usually is.
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers a font with plotters once per process (PNG only); says how to get one if none is
/// found.
fn ensure_font() -> Result<()> {
    static FONT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    let r = FONT.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(p) = std::env::var_os("FLYWHEEL_FONT") {
            candidates.push(PathBuf::from(p));
        }
        candidates.extend(FONT_CANDIDATES.iter().map(PathBuf::from));
        for path in candidates {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            // plotters keeps registered fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok() {
                return Ok(path);
            }
        }
        Err(
            "charts need a TrueType font and none was found: install one (Debian/Ubuntu: \
             apt-get install fonts-dejavu-core) or set FLYWHEEL_FONT=/path/to/font.ttf"
                .to_string(),
        )
    });
    r.as_ref().map(|_| ()).map_err(|e| anyhow!("{e}"))
}

/// One line of a chart, with a dot at every point.
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points in data coordinates.
    pub points: Vec<(f64, f64)>,
    /// Colour.
    pub color: RGBColor,
}

/// A titled line chart over epochs (whole-number x ticks) with labelled axes and a legend.
pub struct LineChart {
    /// Title above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// X range.
    pub x: Range<f64>,
    /// Y range.
    pub y: Range<f64>,
    /// The lines.
    pub series: Vec<Series>,
}

/// Blue, orange, green, red, purple (matplotlib's first colours).
pub const PALETTE: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

fn draw<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, c: &LineChart) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing a chart: {e}");
    area.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(area)
        .caption(&c.title, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(56)
        .build_cartesian_2d(c.x.clone(), c.y.clone())
        .map_err(e)?;
    let int_fmt = |v: &f64| format!("{v:.0}");
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(&c.x_label)
        .y_desc(&c.y_label)
        .axis_desc_style((FAMILY, 15))
        .label_style((FAMILY, 12))
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225));
    let span = (c.x.end - c.x.start).round().max(1.0) as usize;
    mesh.x_labels(span.min(10) + 1).x_label_formatter(&int_fmt);
    mesh.draw().map_err(e)?;
    for s in &c.series {
        let color = s.color;
        chart
            .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))
            .map_err(e)?
            .label(&s.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(e)?;
    }
    if !c.series.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FAMILY, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .draw()
            .map_err(e)?;
    }
    Ok(())
}

/// Charts side by side as one PNG file.
pub fn png(charts: &[LineChart], width: u32, height: u32, path: &Path) -> Result<()> {
    ensure_font()?;
    let n = charts.len().max(1) as u32;
    let root = BitMapBackend::new(path, (width * n, height)).into_drawing_area();
    let areas = root.split_evenly((1, n as usize));
    for (area, c) in areas.iter().zip(charts) {
        draw(area, c)?;
    }
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

/// Loss and accuracy per epoch, training vs validation (accuracy omitted for regression).
pub fn learning_curves(history: &[EpochRecord]) -> Vec<LineChart> {
    curves::learning_curves(history)
        .iter()
        .map(line_chart)
        .collect()
}

fn line_chart(p: &CurvePanel) -> LineChart {
    LineChart {
        title: p.title.to_string(),
        x_label: "epoch".to_string(),
        y_label: p.metric.to_string(),
        x: p.x.clone(),
        y: p.y.clone(),
        series: p
            .series
            .iter()
            .zip(PALETTE)
            .map(|((name, points), color)| Series {
                name: (*name).to_string(),
                points: points.clone(),
                color,
            })
            .collect(),
    }
}
