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

/// One bar: its label, its value as stacked segments (one segment: a plain bar), and the
/// spread of the total over the rounds, drawn as a whisker.
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub segments: Vec<f64>,
    pub range: Option<(f64, f64)>,
}

impl Bar {
    pub fn total(&self) -> f64 {
        self.segments.iter().sum()
    }
}

/// A vertical whisker from `low` to `high` at `x`, with caps `half` wide.
fn whisker(x: f64, low: f64, high: f64, half: f64) -> PathElement<(f64, f64)> {
    PathElement::new(
        vec![
            (x - half, low),
            (x + half, low),
            (x, low),
            (x, high),
            (x - half, high),
            (x + half, high),
        ],
        BLACK.stroke_width(2),
    )
}

/// A bar chart: one bar per model, the value written above it, a whisker for its spread.
/// With `segment_names` (more than one), each bar stacks its segments in those colours and a
/// legend names them.
pub fn bars(
    path: &Path,
    title: &str,
    subtitle: &str,
    y_label: &str,
    segment_names: &[&str],
    data: &[Bar],
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let root = with_subtitle(&root, subtitle)?;
    let n = data.len().max(1);
    let top = data
        .iter()
        .map(|d| d.range.map_or(d.total(), |r| r.1.max(d.total())))
        .fold(0.0, f64::max)
        .max(1e-9)
        // A stacked chart's legend sits in the top right corner: leave the tallest bar's
        // label room below it.
        * if segment_names.len() > 1 { 1.4 } else { 1.15 };
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
    let stacked = segment_names.len() > 1;
    for (i, bar) in data.iter().enumerate() {
        let x = i as f64;
        let mut base = 0.0;
        for (k, segment) in bar.segments.iter().enumerate() {
            let color = if stacked {
                PALETTE[k % PALETTE.len()]
            } else {
                PALETTE[i % PALETTE.len()]
            };
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x + 0.15, base), (x + 0.85, base + segment)],
                    color.filled(),
                )))
                .map_err(|e| anyhow!("{e}"))?;
            base += segment;
        }
        if let Some((low, high)) = bar.range {
            chart
                .draw_series(std::iter::once(whisker(x + 0.5, low, high, 0.08)))
                .map_err(|e| anyhow!("{e}"))?;
        }
        let centre = ("sans-serif", 15).into_font().color(&BLACK).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Bottom,
            ),
        );
        let above = bar.range.map_or(bar.total(), |r| r.1.max(bar.total()));
        chart
            .draw_series(std::iter::once(Text::new(
                crate::units::human(bar.total()),
                (x + 0.5, above + top * 0.01),
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
        root.draw(&Text::new(bar.label.clone(), (px, py + 8), under))
            .map_err(|e| anyhow!("{e}"))?;
    }
    if stacked {
        for (k, name) in segment_names.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            // Below the title, in the plot's top right corner.
            let y = 70 + 20 * k as i32;
            root.draw(&Rectangle::new([(760, y), (774, y + 14)], color.filled()))
                .map_err(|e| anyhow!("{e}"))?;
            root.draw(&Text::new(
                name.to_string(),
                (780, y),
                ("sans-serif", 14).into_font().color(&BLACK),
            ))
            .map_err(|e| anyhow!("{e}"))?;
        }
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// One line of a line chart: a value per x (none where the run failed) and its spread.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<Option<f64>>,
    pub ranges: Vec<Option<(f64, f64)>>,
}

/// A line chart: x is the swept value (evenly spaced, labelled with the values), one line per
/// series.
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    x_values: &[u64],
    series: &[Series],
    subtitle: &str,
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let root = with_subtitle(&root, subtitle)?;
    let top = series
        .iter()
        .flat_map(|s| {
            let highs = s.ranges.iter().flatten().map(|r| r.1);
            s.points.iter().flatten().copied().chain(highs)
        })
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
    for (
        k,
        Series {
            name,
            points,
            ranges,
        },
    ) in series.iter().enumerate()
    {
        let color = PALETTE[k % PALETTE.len()];
        for (i, range) in ranges.iter().enumerate() {
            if let Some((low, high)) = range {
                chart
                    .draw_series(std::iter::once(whisker(i as f64, *low, *high, 0.04)))
                    .map_err(|e| anyhow!("{e}"))?;
            }
        }
        let points: Vec<(f64, f64)> = points
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
        let bar_of = |label: &str, segments: Vec<f64>, range| Bar {
            label: label.into(),
            segments,
            range,
        };
        bars(
            &bar,
            "t",
            "sub",
            "msg/s",
            &["msg/s"],
            &[
                bar_of("a", vec![10.0], None),
                bar_of("b", vec![20.0], Some((18.0, 23.0))),
            ],
        )
        .unwrap();
        let text = std::fs::read_to_string(&bar).unwrap();
        assert!(text.starts_with("<svg") && text.contains("\na\n") && text.contains("\nb\n"));
        // The axes are 1-pixel black lines; a whisker is 2 pixels wide.
        let whisker = r##"stroke="#000000" stroke-width="2""##;
        assert_eq!(text.matches(whisker).count(), 1, "one whisker: {text}");
        let stacked = dir.path().join("s.svg");
        bars(
            &stacked,
            "t",
            "sub",
            "us",
            &["user", "system"],
            &[bar_of("a", vec![1.0, 4.0], Some((4.5, 5.5)))],
        )
        .unwrap();
        let text = std::fs::read_to_string(&stacked).unwrap();
        assert!(
            text.contains("\nuser\n") && text.contains("\nsystem\n"),
            "{text}"
        );
        let line = dir.path().join("l.svg");
        lines(
            &line,
            "t",
            "idle",
            "msg/s",
            &[0, 100, 1000],
            &[Series {
                name: "poll".into(),
                points: vec![Some(1.0), Some(2.0), None],
                ranges: vec![Some((0.9, 1.1)), None, None],
            }],
            "sub",
        )
        .unwrap();
        let text = std::fs::read_to_string(&line).unwrap();
        assert!(text.contains("poll") && text.contains("\n1000\n"));
    }
}
