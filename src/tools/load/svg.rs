//! Line and bar charts as inline SVG text, for the `--report` page: no script, no library, no
//! fonts fetched, so the page renders the same offline, in a CI artefact, years later.
//!
//! A chart maps data to a plot area with one scale per axis, linear or log10 (latencies span
//! microseconds to seconds, and percentile plots stretch 99% → 99.999% as HdrHistogram's
//! plotter does, with `x = 1 / (1 - q)` on a log axis). Every series keeps its data in the SVG
//! (`data-series`, one `polyline` or a group of `rect`s), so a test can check what was drawn.

use std::fmt::Write;

/// Width and height of every chart, in SVG user units (pixels at 100%).
const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 300.0;
/// Margins around the plot area: room for tick labels (left, bottom) and the legend (top).
const LEFT: f64 = 78.0;
const RIGHT: f64 = 36.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 46.0;

/// How an axis maps values to positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Evenly spaced values.
    Linear,
    /// Decades evenly spaced; values must be above 0.
    Log10,
}

/// One axis: its label, scale, range and labelled ticks.
#[derive(Debug, Clone)]
pub struct Axis {
    /// What the axis measures, with its unit.
    pub label: String,
    /// Linear or log.
    pub scale: Scale,
    /// The range shown.
    pub min: f64,
    pub max: f64,
    /// Tick positions (data values) and their labels.
    pub ticks: Vec<(f64, String)>,
}

impl Axis {
    /// A linear axis of counts (whole numbers) from 0 to a round number above `max`, with
    /// round ticks (1, 2 or 5 × 10ⁿ, never below 1).
    pub fn linear(label: &str, max: f64, unit: impl Fn(f64) -> String) -> Axis {
        let max = if max > 0.0 { max } else { 1.0 };
        let raw = max / 5.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * mag)
            .max(1.0);
        let top = (max / step).ceil() * step;
        let ticks = (0..=((top / step).round() as usize))
            .map(|i| {
                let v = i as f64 * step;
                (v, unit(v))
            })
            .collect();
        Axis {
            label: label.into(),
            scale: Scale::Linear,
            min: 0.0,
            max: top,
            ticks,
        }
    }

    /// A log axis covering `lo..=hi` in whole decades, one tick per decade.
    pub fn log(label: &str, lo: f64, hi: f64, unit: impl Fn(f64) -> String) -> Axis {
        let lo = 10f64.powf(lo.max(1e-9).log10().floor());
        let hi = 10f64.powf(hi.max(lo * 10.0).log10().ceil());
        let mut ticks = Vec::new();
        let mut v = lo;
        while v <= hi * 1.0001 {
            ticks.push((v, unit(v)));
            v *= 10.0;
        }
        Axis {
            label: label.into(),
            scale: Scale::Log10,
            min: lo,
            max: hi,
            ticks,
        }
    }

    /// Where `v` falls, 0.0 (min) to 1.0 (max).
    fn fraction(&self, v: f64) -> f64 {
        let f = match self.scale {
            Scale::Linear => (v - self.min) / (self.max - self.min),
            Scale::Log10 => {
                (v.max(self.min).log10() - self.min.log10()) / (self.max.log10() - self.min.log10())
            }
        };
        if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A solid line.
    Line,
    /// A dashed line.
    Dashed,
    /// One bar per point, from the axis up.
    Bars,
}

/// One named series of `(x, y)` points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Its name, in the legend and in `data-series`.
    pub name: String,
    /// A CSS colour.
    pub color: &'static str,
    /// Line, dashed line or bars.
    pub style: Style,
    /// The data.
    pub points: Vec<(f64, f64)>,
}

/// A chart: axes and series.
#[derive(Debug, Clone)]
pub struct Chart {
    /// The `id` of the `<svg>` element.
    pub id: String,
    /// Shown above the plot.
    pub title: String,
    /// The horizontal axis.
    pub x: Axis,
    /// The vertical axis.
    pub y: Axis,
    /// What is drawn, in order (later on top).
    pub series: Vec<Series>,
}

/// Escapes text for HTML and SVG (element content and attribute values).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl Chart {
    fn px(&self, x: f64, y: f64) -> (f64, f64) {
        let w = WIDTH - LEFT - RIGHT;
        let h = HEIGHT - TOP - BOTTOM;
        (
            LEFT + self.x.fraction(x) * w,
            TOP + (1.0 - self.y.fraction(y)) * h,
        )
    }

    /// The chart as one `<svg>` element.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg id="{}" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" xmlns="http://www.w3.org/2000/svg"><title>{}</title>"#,
            escape(&self.id),
            escape(&self.title)
        );
        let (x0, y0) = (LEFT, HEIGHT - BOTTOM);
        let (x1, y1) = (WIDTH - RIGHT, TOP);
        // Grid and tick labels.
        for (v, label) in &self.y.ticks {
            let (_, y) = self.px(self.x.min, *v);
            let _ = write!(
                s,
                r#"<line class="grid" x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                x0 - 6.0,
                y + 4.0,
                escape(label)
            );
        }
        for (v, label) in &self.x.ticks {
            let (x, _) = self.px(*v, self.y.min);
            let _ = write!(
                s,
                r#"<line class="grid" x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}"/><text class="tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                y0 + 16.0,
                escape(label)
            );
        }
        let _ = write!(
            s,
            r#"<rect class="frame" x="{x0}" y="{y1}" width="{}" height="{}"/>"#,
            x1 - x0,
            y0 - y1
        );
        let _ = write!(
            s,
            r#"<text class="label" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            (x0 + x1) / 2.0,
            HEIGHT - 8.0,
            escape(&self.x.label)
        );
        let _ = write!(
            s,
            r#"<text class="label" transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            (y0 + y1) / 2.0,
            escape(&self.y.label)
        );
        // Series.
        for series in &self.series {
            let name = escape(&series.name);
            match series.style {
                Style::Bars => {
                    let n = series.points.len().max(1) as f64;
                    let width = ((x1 - x0) / n * 0.7).clamp(1.0, 24.0);
                    let _ = write!(
                        s,
                        r#"<g class="series" data-series="{name}" data-points="{}" fill="{}">"#,
                        series.points.len(),
                        series.color
                    );
                    for &(x, y) in &series.points {
                        let (px, py) = self.px(x, y);
                        let _ = write!(
                            s,
                            r#"<rect x="{:.1}" y="{py:.1}" width="{width:.1}" height="{:.1}"/>"#,
                            px - width / 2.0,
                            (y0 - py).max(0.0)
                        );
                    }
                    s.push_str("</g>");
                }
                Style::Line | Style::Dashed => {
                    let dash = if series.style == Style::Dashed {
                        r#" stroke-dasharray="6 4""#
                    } else {
                        ""
                    };
                    let _ = write!(
                        s,
                        r#"<polyline class="series" data-series="{name}" data-points="{}" fill="none" stroke="{}" stroke-width="2"{dash} points=""#,
                        series.points.len(),
                        series.color
                    );
                    for (i, &(x, y)) in series.points.iter().enumerate() {
                        let (px, py) = self.px(x, y);
                        let sep = if i > 0 { " " } else { "" };
                        let _ = write!(s, "{sep}{px:.1},{py:.1}");
                    }
                    s.push_str(r#""/>"#);
                }
            }
        }
        // Legend, top left.
        let mut lx = x0;
        for series in &self.series {
            let _ = write!(
                s,
                r#"<rect x="{lx:.1}" y="12" width="14" height="4" fill="{}"/><text class="legend" x="{:.1}" y="18">{}</text>"#,
                series.color,
                lx + 18.0,
                escape(&series.name)
            );
            lx += 30.0 + 7.0 * series.name.chars().count() as f64;
        }
        s.push_str("</svg>");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_axis_rounds_up_with_round_ticks() {
        let a = Axis::linear("x", 9_300.0, |v| format!("{v}"));
        assert_eq!(a.max, 10_000.0);
        assert_eq!(a.ticks.len(), 6);
        assert_eq!(a.ticks[1].0, 2000.0);
        assert_eq!(a.fraction(5000.0), 0.5);
        let small = Axis::linear("s", 2.0, |v| format!("{v}"));
        assert_eq!(
            small.ticks.iter().map(|t| t.0).collect::<Vec<_>>(),
            [0.0, 1.0, 2.0]
        );
    }

    #[test]
    fn log_axis_covers_whole_decades() {
        let a = Axis::log("µs", 37.0, 1_200_000.0, |v| format!("{v}"));
        assert_eq!((a.min, a.max), (10.0, 10_000_000.0));
        assert_eq!(a.ticks.len(), 7);
        assert!((a.fraction(1000.0) - 2.0 / 6.0).abs() < 1e-9);
        assert_eq!(a.fraction(0.0), 0.0); // below the range: at the axis
    }

    #[test]
    fn renders_series_with_their_data_and_escapes_text() {
        let chart = Chart {
            id: "c".into(),
            title: "a <b> & c".into(),
            x: Axis::linear("s", 3.0, |v| format!("{v}")),
            y: Axis::linear("n", 10.0, |v| format!("{v}")),
            series: vec![
                Series {
                    name: "up".into(),
                    color: "#06c",
                    style: Style::Line,
                    points: vec![(0.0, 0.0), (1.0, 5.0), (2.0, 10.0)],
                },
                Series {
                    name: "bars".into(),
                    color: "#c00",
                    style: Style::Bars,
                    points: vec![(1.0, 2.0)],
                },
            ],
        };
        let svg = chart.render();
        assert!(svg.starts_with("<svg id=\"c\""), "{svg}");
        assert!(svg.contains("a &lt;b&gt; &amp; c"), "{svg}");
        assert!(svg.contains(r#"data-series="up" data-points="3""#), "{svg}");
        assert!(
            svg.contains(r#"data-series="bars" data-points="1""#),
            "{svg}"
        );
        assert!(svg.ends_with("</svg>"));
    }
}
