//! PNG plots of the results (plotters, with DejaVu Sans embedded so no system fonts
//! are needed).

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

/// One line per simulator: `(name, [(nodes, value)])`.
pub type Series = [(String, Vec<(f64, f64)>)];

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

fn color(index: usize) -> RGBColor {
    [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
    ][index % 3]
}

/// A log-log line plot of `series` against node count.
fn lines(series: &Series, path: &Path, title: &str, y_label: &str) -> anyhow::Result<()> {
    register_font();
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x_max, mut y_min, mut y_max) = (1.0f64, f64::MAX, 0.0f64);
    for (x, y) in points {
        x_max = x_max.max(*x);
        y_min = y_min.min(*y);
        y_max = y_max.max(*y);
    }
    if y_max <= 0.0 {
        y_min = 0.1;
        y_max = 1.0;
    }
    let y_min = (y_min.max(1e-3) / 2.0).max(1e-3);
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(
            (1.0f64..x_max * 2.0).log_scale(),
            (y_min..y_max * 2.0).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("nodes")
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .draw()?;
    draw_series(&mut chart, series)?;
    root.present()?;
    Ok(())
}

/// Draws each series with its marker and legend entry.
fn draw_series<'a, X, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    series: &Series,
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (index, (name, points)) in series.iter().enumerate() {
        let style = color(index);
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                style.stroke_width(2),
            ))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], style.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, style.filled())))?;
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Simulator memory (PSS, MiB) against minutes into the soak, linear axes.
pub fn soak(series: &Series, path: &Path) -> anyhow::Result<()> {
    register_font();
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x_max, mut y_max) = (1.0f64, 1.0f64);
    for (x, y) in points {
        x_max = x_max.max(*x);
        y_max = y_max.max(*y);
    }
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Simulator memory over the soak with pod churn",
            ("sans-serif", 24),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0f64..x_max * 1.05, 0.0f64..y_max * 1.2)?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc("PSS (MiB)")
        .label_style(("sans-serif", 14))
        .draw()?;
    draw_series(&mut chart, series)?;
    root.present()?;
    Ok(())
}

/// Memory (PSS) per node against node count.
pub fn memory_per_node(series: &Series, path: &Path) -> anyhow::Result<()> {
    lines(
        series,
        path,
        "Simulator memory per node (PSS, idle)",
        "KiB per node",
    )
}

/// p99 pod creation-to-Running latency against node count.
pub fn pod_latency(series: &Series, path: &Path) -> anyhow::Result<()> {
    lines(
        series,
        path,
        "Pod creation to Running, p99 (through the scheduler)",
        "seconds",
    )
}
