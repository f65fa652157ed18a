//! Charts as SVG through `plotters`: line charts (training curves, latency distributions), a
//! labelled BLEU-vs-speed scatter with its Pareto frontier, and grouped bar charts. Every chart
//! has a title, titled axes with ticks and a grid; points are told apart by shape and label, not
//! colour alone. Text is left to the viewer's fonts (no font files needed to draw).

use plotters::{
    coord::{Shift, combinators::BindKeyPoints, types::RangedCoordf64},
    prelude::*,
};

const WIDTH: u32 = 800;
const PANEL_HEIGHT: u32 = 380;
const FONT: &str = "sans-serif";

/// Colour-blind-safe palette (Okabe–Ito), cycled.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// One line: name (legend), points; `markers` draws each point too (sparse series, e.g. dev BLEU
/// per evaluation).
#[derive(Debug)]
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
    pub markers: bool,
}

/// A line chart panel.
#[derive(Debug)]
pub struct LineChart<'a> {
    pub title: String,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: Vec<Series<'a>>,
}

/// A labelled point of a scatter chart.
#[derive(Debug)]
pub struct Labelled {
    pub label: String,
    pub x: f64,
    pub y: f64,
}

type Error = Box<dyn std::error::Error>;

/// A tick label: integers without decimals, others with what they need (at most 3).
fn tick(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        return format!("{v:.0}");
    }
    let text = format!("{v:.3}");
    text.trim_end_matches('0').to_owned()
}

fn finite(points: impl Iterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    points.filter(|(x, y)| x.is_finite() && y.is_finite()).collect()
}

/// `[lo, hi]` of `values` widened by `pad` of its span (a flat range gets ±1 or ±10%).
fn range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        let d = if lo.abs() > 1e-9 { lo.abs() * 0.1 } else { 1.0 };
        return (lo - d, hi + d);
    }
    let d = (hi - lo) * pad;
    (lo - d, hi + d)
}

fn render(height: u32, draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), Error>) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        let drawn = root.fill(&WHITE).map_err(Error::from).and_then(|()| draw(&root));
        if let Err(e) = drawn.and_then(|()| root.present().map_err(Error::from)) {
            // Drawing into a string fails only on invalid ranges; say so in the picture.
            tracing::warn!("plot: {e}");
        }
    }
    svg
}

/// Line chart panels stacked vertically in one SVG document.
pub fn line_charts(charts: &[LineChart<'_>]) -> String {
    render(PANEL_HEIGHT * charts.len().max(1) as u32, |root| {
        for (chart, area) in charts.iter().zip(root.split_evenly((charts.len().max(1), 1))) {
            line_panel(&area, chart)?;
        }
        Ok(())
    })
}

fn line_panel(area: &DrawingArea<SVGBackend, Shift>, chart: &LineChart<'_>) -> Result<(), Error> {
    let lines: Vec<Vec<(f64, f64)>> = chart.series.iter().map(|s| finite(s.points.iter().copied())).collect();
    let (x0, x1) = range(lines.iter().flatten().map(|p| p.0), 0.0);
    let (y0, y1) = range(lines.iter().flatten().map(|p| p.1), 0.05);
    let mut ctx = ChartBuilder::on(area)
        .caption(&chart.title, (FONT, 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    ctx.configure_mesh()
        .x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .axis_desc_style((FONT, 15))
        .label_style((FONT, 13))
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .max_light_lines(1)
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(200, 200, 200))
        .draw()?;
    for (i, (series, points)) in chart.series.iter().zip(&lines).enumerate() {
        let c = colour(i);
        let line = ctx.draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))?;
        line.label(series.name).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        if series.markers {
            for &p in points {
                draw_marker(&mut ctx, i, p, c)?;
            }
        }
    }
    draw_legend(&mut ctx, emptiest_corner(&lines, (x0, x1), (y0, y1)))
}

/// The corner of the plot where the legend hides the fewest drawn points: each line is sampled
/// along its segments too (two sparse points can draw a line through a corner), and ties go to
/// upper right, lower right, upper left, lower left. A rising curve gets its legend at the lower
/// right, a falling one at the upper right.
fn emptiest_corner(lines: &[Vec<(f64, f64)>], x: (f64, f64), y: (f64, f64)) -> SeriesLabelPosition {
    // The legend box's share of the plot, roughly: a third of the width, a third of the height.
    const SHARE: f64 = 0.35;
    const SAMPLES: usize = 16;
    let unit = |v: f64, (lo, hi): (f64, f64)| if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
    let mut sampled = Vec::new();
    for line in lines {
        sampled.extend(line.first().copied());
        for pair in line.windows(2) {
            let ((ax, ay), (bx, by)) = (pair[0], pair[1]);
            sampled.extend((1..=SAMPLES).map(|k| {
                let t = k as f64 / SAMPLES as f64;
                (ax + (bx - ax) * t, ay + (by - ay) * t)
            }));
        }
    }
    let hidden = |right: bool, upper: bool| {
        sampled
            .iter()
            .filter(|&&(px, py)| {
                let (u, v) = (unit(px, x), unit(py, y));
                (if right { u >= 1.0 - SHARE } else { u <= SHARE })
                    && (if upper { v >= 1.0 - SHARE } else { v <= SHARE })
            })
            .count()
    };
    [
        (SeriesLabelPosition::UpperRight, hidden(true, true)),
        (SeriesLabelPosition::LowerRight, hidden(true, false)),
        (SeriesLabelPosition::UpperLeft, hidden(false, true)),
        (SeriesLabelPosition::LowerLeft, hidden(false, false)),
    ]
    .into_iter()
    .min_by_key(|&(_, n)| n)
    .map_or(SeriesLabelPosition::UpperRight, |(corner, _)| corner)
}

/// The legend of the series drawn with a label, in a framed box.
fn draw_legend<'a, X, Y>(
    ctx: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> Result<(), Error>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    ctx.configure_series_labels()
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .position(position)
        .draw()?;
    Ok(())
}

/// Marker `i` (shape by index, so points differ without colour): circle, triangle, square,
/// cross, then again.
fn draw_marker<X, Y>(
    ctx: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, Y>>,
    i: usize,
    at: (f64, f64),
    c: RGBColor,
) -> Result<(), Error>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let style = c.filled();
    let here = EmptyElement::at(at);
    match i % 4 {
        0 => ctx.draw_series(std::iter::once(here + Circle::new((0, 0), 5, style)))?,
        1 => ctx.draw_series(std::iter::once(here + TriangleMarker::new((0, 0), 6, style)))?,
        2 => ctx.draw_series(std::iter::once(here + Rectangle::new([(-4, -4), (4, 4)], style)))?,
        _ => ctx.draw_series(std::iter::once(here + Cross::new((0, 0), 5, c.stroke_width(2))))?,
    };
    Ok(())
}

/// Indices of the points no other point beats on both axes (higher x and higher y), by x.
pub fn pareto_frontier(points: &[(f64, f64)]) -> Vec<usize> {
    let mut frontier: Vec<usize> = (0..points.len())
        .filter(|&i| {
            let (x, y) = points[i];
            !points.iter().any(|&(qx, qy)| qx >= x && qy >= y && (qx > x || qy > y))
        })
        .collect();
    frontier.sort_by(|&a, &b| points[a].0.total_cmp(&points[b].0));
    frontier
}

/// A scatter of labelled points on a log-scaled x axis (speed), y linear (quality), with the
/// Pareto frontier drawn through the points no other beats on both. The speed axis is ticked at
/// 1-1.5-2-3-5-7 × 10ⁿ (plotters' own log ticks are powers of ten: none when every point sits in
/// one decade); labels of nearby points are stacked instead of drawn over each other, and put
/// left of points near the right edge.
pub fn pareto_chart(title: &str, x_label: &str, y_label: &str, points: &[Labelled]) -> String {
    render(PANEL_HEIGHT + 120, |root| {
        let usable: Vec<&Labelled> =
            points.iter().filter(|p| p.x > 0.0 && p.x.is_finite() && p.y.is_finite()).collect();
        let (lo, hi) = range(usable.iter().map(|p| p.x.ln()), 0.15);
        let (y0, y1) = range(usable.iter().map(|p| p.y), 0.12);
        let (x0, x1) = (lo.exp(), hi.exp());
        let mut ctx = ChartBuilder::on(root)
            .caption(title, (FONT, 20))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d((x0..x1).log_scale().with_key_points(speed_ticks(x0, x1)), y0..y1)?;
        ctx.configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .axis_desc_style((FONT, 15))
            .label_style((FONT, 13))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&tick)
            .max_light_lines(1)
            .light_line_style(RGBColor(240, 240, 240))
            .bold_line_style(RGBColor(200, 200, 200))
            .draw()?;
        let coordinates: Vec<(f64, f64)> = usable.iter().map(|p| (p.x, p.y)).collect();
        let frontier: Vec<(f64, f64)> = pareto_frontier(&coordinates).into_iter().map(|i| coordinates[i]).collect();
        ctx.draw_series(LineSeries::new(frontier, RGBColor(120, 120, 120).stroke_width(2)))?
            .label("Pareto frontier")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RGBColor(120, 120, 120).stroke_width(2)));
        let right_edge = ctx.plotting_area().get_pixel_range().0.end;
        let anchors: Vec<(i32, i32)> = usable.iter().map(|p| ctx.backend_coord(&(p.x, p.y))).collect();
        let widths: Vec<i32> = usable.iter().map(|p| label_width(&p.label)).collect();
        let offsets = label_offsets(&anchors, &widths, right_edge);
        for (i, p) in usable.iter().enumerate() {
            let c = colour(i);
            draw_marker(&mut ctx, i, (p.x, p.y), c)?;
            let (dx, dy) = offsets[i];
            // A label moved off its usual place gets a leader line back to its point.
            let leader =
                if (dx, dy) == (8, -16) { vec![] } else { vec![(0, 0), (if dx > 0 { dx } else { -8 }, dy + 7)] };
            ctx.draw_series(std::iter::once(
                EmptyElement::at((p.x, p.y))
                    + PathElement::new(leader, RGBColor(150, 150, 150))
                    + Text::new(p.label.clone(), (dx, dy), (FONT, 13).into_font().color(&BLACK)),
            ))?;
        }
        draw_legend(&mut ctx, SeriesLabelPosition::LowerLeft)
    })
}

/// Tick values for a log axis over `lo..hi`: 1, 1.5, 2, 3, 5, 7 × each power of ten inside.
fn speed_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in [1.0, 1.5, 2.0, 3.0, 5.0, 7.0] {
            let v = m * decade;
            if (lo..=hi).contains(&v) {
                ticks.push(v);
            }
        }
        decade *= 10.0;
    }
    ticks
}

/// Rough width in pixels of a 13-px label (no font metrics in an SVG backend).
fn label_width(label: &str) -> i32 {
    7 * label.chars().count() as i32
}

/// Each label's offset from its point (pixels): right of it and above, or left of it where it
/// would cross `right_edge`; moved down a line at a time while it overlaps a label placed before.
fn label_offsets(anchors: &[(i32, i32)], widths: &[i32], right_edge: i32) -> Vec<(i32, i32)> {
    const LINE: i32 = 15;
    let mut placed: Vec<(i32, i32, i32)> = Vec::new(); // left, top, width
    let mut offsets = Vec::with_capacity(anchors.len());
    for (&(x, y), &width) in anchors.iter().zip(widths) {
        let dx = if x + 8 + width > right_edge { -8 - width } else { 8 };
        let mut dy = -16;
        while placed.iter().any(|&(left, top, w)| {
            let (l, t) = (x + dx, y + dy);
            l < left + w && left < l + width && (t - top).abs() < LINE
        }) {
            dy += LINE;
        }
        placed.push((x + dx, y + dy, width));
        offsets.push((dx, dy));
    }
    offsets
}

/// One bar chart panel: a value per category, drawn as horizontal bars (long model names
/// stay readable), each labelled with its value.
#[derive(Debug)]
pub struct BarChart<'a> {
    pub title: String,
    pub x_label: &'a str,
    pub bars: Vec<(String, f64)>,
    /// Decimals of the value labels.
    pub decimals: usize,
}

/// Bar chart panels stacked vertically in one SVG document (e.g. size and speed per model).
pub fn bar_charts(charts: &[BarChart<'_>]) -> String {
    let rows: usize = charts.iter().map(|c| c.bars.len().max(1)).max().unwrap_or(1);
    let panel = 110 + 34 * rows as u32;
    render(panel * charts.len().max(1) as u32, |root| {
        for (chart, area) in charts.iter().zip(root.split_evenly((charts.len().max(1), 1))) {
            bar_panel(&area, chart)?;
        }
        Ok(())
    })
}

fn bar_panel(area: &DrawingArea<SVGBackend, Shift>, chart: &BarChart<'_>) -> Result<(), Error> {
    let n = chart.bars.len().max(1);
    let top = chart.bars.iter().map(|b| b.1).filter(|v| v.is_finite()).fold(0.0f64, f64::max);
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };
    let longest = chart.bars.iter().map(|b| b.0.chars().count()).max().unwrap_or(4) as u32;
    let mut ctx: ChartContext<SVGBackend, Cartesian2d<RangedCoordf64, RangedCoordf64>> = ChartBuilder::on(area)
        .caption(&chart.title, (FONT, 18))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(16 + 8 * longest)
        .build_cartesian_2d(0.0..top, 0.0..n as f64)?;
    // The first bar on top: category i spans [n-1-i, n-i].
    let names: Vec<String> = chart.bars.iter().map(|b| b.0.clone()).collect();
    let name_of = move |y: &f64| {
        let slot = y - 0.5;
        let i = slot.round();
        if (slot - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
            names[names.len() - 1 - i as usize].clone()
        } else {
            String::new()
        }
    };
    ctx.configure_mesh()
        .disable_y_mesh()
        .y_labels(2 * n + 1)
        .y_label_formatter(&name_of)
        .x_label_formatter(&tick)
        .x_desc(chart.x_label)
        .axis_desc_style((FONT, 15))
        .label_style((FONT, 13))
        .max_light_lines(1)
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(200, 200, 200))
        .draw()?;
    for (i, (_, value)) in chart.bars.iter().enumerate() {
        if !value.is_finite() {
            continue;
        }
        let y = (n - 1 - i) as f64;
        ctx.draw_series(std::iter::once(Rectangle::new([(0.0, y + 0.2), (*value, y + 0.8)], colour(i).filled())))?;
        ctx.draw_series(std::iter::once(
            EmptyElement::at((*value, y + 0.5)) + Text::new(format!("{value:.*}", chart.decimals), (6, -7), (FONT, 13)),
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(label: &str, x: f64, y: f64) -> Labelled {
        Labelled { label: label.into(), x, y }
    }

    #[test]
    fn labels_of_nearby_points_are_stacked_and_kept_inside_the_plot() {
        // Two points at the same pixel and one near the right edge.
        let offsets = label_offsets(&[(100, 200), (100, 200), (780, 100)], &[70, 70, 70], 790);
        assert_eq!(offsets[0], (8, -16));
        assert_eq!(offsets[1], (8, -1), "the second label goes a line lower");
        assert_eq!(offsets[2], (-78, -16), "left of a point near the edge");
    }

    #[test]
    fn the_legend_goes_to_the_corner_the_lines_leave_empty() {
        let rising = vec![vec![(0.0, 17.7), (350.0, 20.5), (525.0, 22.0), (700.0, 24.6)]];
        let falling = vec![vec![(0.0, 8.0), (100.0, 2.0), (700.0, 1.5)]];
        let corner = |lines: &[Vec<(f64, f64)>]| {
            let all: Vec<(f64, f64)> = lines.iter().flatten().copied().collect();
            let (x, y) = (range(all.iter().map(|p| p.0), 0.0), range(all.iter().map(|p| p.1), 0.05));
            emptiest_corner(lines, x, y)
        };
        assert_eq!(corner(&rising), SeriesLabelPosition::LowerRight);
        assert_eq!(corner(&falling), SeriesLabelPosition::UpperRight);
        // Two points alone: only the segment between them fills corners (upper left and lower
        // right, then lower left and upper right).
        let diagonal = vec![vec![(0.0, 1.0), (1.0, 0.0)]];
        assert_eq!(corner(&diagonal), SeriesLabelPosition::UpperRight);
        let anti = vec![vec![(0.0, 0.0), (1.0, 1.0)]];
        assert_eq!(corner(&anti), SeriesLabelPosition::LowerRight);
    }

    #[test]
    fn a_speed_axis_within_one_decade_still_has_ticks() {
        assert_eq!(speed_ticks(1300.0, 4500.0), vec![1500.0, 2000.0, 3000.0]);
        assert_eq!(speed_ticks(90.0, 1600.0), vec![100.0, 150.0, 200.0, 300.0, 500.0, 700.0, 1000.0, 1500.0]);
    }

    #[test]
    fn the_frontier_keeps_exactly_the_points_nothing_beats_on_both_axes() {
        // teacher, 6-2, a worse one, the BiGRU.
        let points = [(100.0, 30.0), (400.0, 29.0), (300.0, 20.0), (900.0, 22.0)];
        assert_eq!(pareto_frontier(&points), vec![0, 1, 3]);
    }

    #[test]
    fn charts_carry_titles_axis_names_ticks_and_every_label() {
        let svg = pareto_chart(
            "BLEU vs speed",
            "tokens/s (log)",
            "BLEU",
            &[p("teacher", 120.0, 31.5), p("6-2 kd", 480.0, 30.1)],
        );
        for text in ["BLEU vs speed", "tokens/s (log)", "teacher", "6-2 kd", "Pareto frontier"] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(svg.matches("<text").count() > 10, "tick labels drawn");
        let curves = line_charts(&[LineChart {
            title: "dev BLEU".into(),
            x_label: "updates",
            y_label: "BLEU",
            series: vec![Series { name: "dev BLEU", points: vec![(100.0, 1.0), (200.0, 5.0)], markers: true }],
        }]);
        assert!(curves.contains("updates") && curves.contains("<circle"), "{curves}");
        let bars = bar_charts(&[BarChart {
            title: "size".into(),
            x_label: "MiB",
            bars: vec![("teacher".into(), 40.0), ("6-2".into(), 12.5)],
            decimals: 1,
        }]);
        assert!(bars.contains("12.5") && bars.contains("teacher"), "{bars}");
    }
}
