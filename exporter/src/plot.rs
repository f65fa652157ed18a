//! A dependency-free SVG line chart for training curves (loss per update, dev BLEU per eval).

use std::fmt::Write;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 360.0;
const MARGIN: f64 = 50.0;

/// One series: name, colour, (x, y) points.
#[derive(Debug)]
pub struct Series<'a> {
    pub name: &'a str,
    pub colour: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// One chart per entry, stacked vertically, as an SVG document.
pub fn document(charts: &[String]) -> String {
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#,
        HEIGHT * charts.len() as f64
    );
    for (i, chart) in charts.iter().enumerate() {
        let _ = write!(svg, r#"<g transform="translate(0,{})">{chart}</g>"#, HEIGHT * i as f64);
    }
    svg.push_str("</svg>\n");
    svg
}

/// Draws `series` on shared x and y axes scaled to the data; an SVG group for [`document`].
pub fn line_chart(title: &str, x_label: &str, series: &[Series<'_>]) -> String {
    let all = series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let (x1, y1) = (if x1 > x0 { x1 } else { x0 + 1.0 }, if y1 > y0 { y1 } else { y0 + 1.0 });
    let sx = |x: f64| MARGIN + (x - x0) / (x1 - x0) * (WIDTH - 2.0 * MARGIN);
    let sy = |y: f64| HEIGHT - MARGIN - (y - y0) / (y1 - y0) * (HEIGHT - 2.0 * MARGIN);
    let mut svg = format!(r#"<text x="{}" y="20" text-anchor="middle" font-size="14">{title}</text>"#, WIDTH / 2.0);
    let (left, right, bottom, top) = (MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN, MARGIN);
    let _ = write!(svg, r#"<path d="M{left} {top} V{bottom} H{right}" stroke="black" fill="none"/>"#);
    let _ = write!(
        svg,
        r#"<text x="{left}" y="{}">{x0:.0}</text><text x="{right}" y="{}" text-anchor="end">{x1:.0} {x_label}</text>"#,
        bottom + 16.0,
        bottom + 16.0
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="{bottom}" text-anchor="end">{y0:.2}</text><text x="{}" y="{}" text-anchor="end">{y1:.2}</text>"#,
        left - 4.0,
        left - 4.0,
        top + 4.0
    );
    for (i, s) in series.iter().enumerate() {
        let points: Vec<String> = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline points="{}" stroke="{}" fill="none" stroke-width="1.5"/>"#,
            points.join(" "),
            s.colour
        );
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" fill="{}">{}</text>"#,
            right - 120.0,
            top + 16.0 * (i + 1) as f64,
            s.colour,
            s.name
        );
    }
    svg
}
