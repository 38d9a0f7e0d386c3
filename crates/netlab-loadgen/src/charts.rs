//! SVG charts (plotters): one bar per model for `compare`, one line per model for `sweep`.
//! Text is left to the SVG viewer's fonts (plotters' naive font metrics, no font files).

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Writes `subtitle` (the workload) small at the bottom and returns the area above it.
fn with_subtitle<'a>(
    root: &DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
    subtitle: &str,
) -> anyhow::Result<DrawingArea<SVGBackend<'a>, plotters::coord::Shift>> {
    let (upper, lower) = root.split_vertically(475);
    lower
        .draw(&Text::new(
            subtitle.to_string(),
            (10, 5),
            ("sans-serif", 13).into_font().color(&RGBColor(90, 90, 90)),
        ))
        .map_err(|e| anyhow!("{e}"))?;
    Ok(upper)
}

/// A bar chart: one bar per (label, value), the value written above it.
pub fn bars(
    path: &Path,
    title: &str,
    subtitle: &str,
    y_label: &str,
    data: &[(String, f64)],
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let root = with_subtitle(&root, subtitle)?;
    let n = data.len().max(1);
    let top = data.iter().map(|d| d.1).fold(0.0, f64::max).max(1e-9) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..n as f64, 0f64..top)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y_label)
        .y_label_formatter(&|v| crate::units::human(*v))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, (label, value)) in data.iter().enumerate() {
        let x = i as f64;
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x + 0.15, 0.0), (x + 0.85, *value)],
                color.filled(),
            )))
            .map_err(|e| anyhow!("{e}"))?;
        let centre = ("sans-serif", 15).into_font().color(&BLACK).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Bottom,
            ),
        );
        chart
            .draw_series(std::iter::once(Text::new(
                crate::units::human(*value),
                (x + 0.5, *value + top * 0.01),
                centre.clone(),
            )))
            .map_err(|e| anyhow!("{e}"))?;
        let under = ("sans-serif", 16).into_font().color(&BLACK).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            ),
        );
        // The model name under its bar, drawn in pixel space below the plotting area.
        let (px, py) = chart.backend_coord(&(x + 0.5, 0.0));
        root.draw(&Text::new(label.clone(), (px, py + 8), under))
            .map_err(|e| anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// A line chart: x is the swept value (evenly spaced, labelled with the values), one line per
/// series.
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    x_values: &[u64],
    series: &[(String, Vec<Option<f64>>)],
    subtitle: &str,
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let root = with_subtitle(&root, subtitle)?;
    let top = series
        .iter()
        .flat_map(|s| s.1.iter().flatten())
        .copied()
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.3; // room for the legend above the lines
    let n = x_values.len().max(1);
    let labels: Vec<String> = x_values.iter().map(|v| v.to_string()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.3f64..(n as f64 - 0.7), 0f64..top)
        .map_err(|e| anyhow!("{e}"))?;
    let formatter = |v: &f64| {
        let i = v.round();
        if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
            labels[i as usize].clone()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_labels(n * 10 + 1)
        .x_label_formatter(&formatter)
        .y_label_formatter(&|v| crate::units::human(*v))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (k, (name, values)) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let points: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i as f64, v)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| anyhow!("{e}"))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(|e| anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_svg_files() {
        let dir = tempfile::tempdir().unwrap();
        let bar = dir.path().join("b.svg");
        bars(
            &bar,
            "t",
            "sub",
            "msg/s",
            &[("a".into(), 10.0), ("b".into(), 20.0)],
        )
        .unwrap();
        let text = std::fs::read_to_string(&bar).unwrap();
        assert!(text.starts_with("<svg") && text.contains("\na\n") && text.contains("\nb\n"));
        let line = dir.path().join("l.svg");
        lines(
            &line,
            "t",
            "idle",
            "msg/s",
            &[0, 100, 1000],
            &[("poll".into(), vec![Some(1.0), Some(2.0), None])],
            "sub",
        )
        .unwrap();
        let text = std::fs::read_to_string(&line).unwrap();
        assert!(text.contains("poll") && text.contains("\n1000\n"));
    }
}
