//! Latency-percentile plot (SVG, no system fonts): x = 1/(1-p) on a log scale, labelled as
//! percentiles (0%, 90%, 99%, 99.9%, ...), y = latency in ms, one line per histogram.

use hdrhistogram::Histogram;
use plotters::prelude::*;
use std::path::Path;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn pct_label(x: f64) -> String {
    if x <= 1.0 {
        return "0%".into();
    }
    let p = 100.0 * (1.0 - 1.0 / x);
    let s = format!("{p:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// Points (1/(1-q), ms) of the percentile curve; the max is placed at the last decade.
fn curve(h: &Histogram<u64>, xmax: f64) -> Vec<(f64, f64)> {
    let mut pts = Vec::new();
    for v in h.iter_quantiles(10) {
        let q = v.quantile_iterated_to();
        let x = if q >= 1.0 {
            xmax
        } else {
            (1.0 / (1.0 - q)).min(xmax)
        };
        pts.push((x, v.value_iterated_to() as f64 / 1000.0));
    }
    if pts.last().is_some_and(|p| p.0 < xmax) {
        pts.push((xmax, h.max() as f64 / 1000.0));
    }
    pts
}

pub fn percentile_plot(
    path: &Path,
    title: &str,
    series: &[(String, &Histogram<u64>)],
) -> Result<(), String> {
    let series: Vec<_> = series.iter().filter(|(_, h)| !h.is_empty()).collect();
    let max_count = series.iter().map(|(_, h)| h.len()).max().unwrap_or(1);
    // One decade beyond what the sample count can resolve, at least 99.99%.
    let decades = ((max_count as f64).log10().ceil() as i32).clamp(4, 7);
    let xmax = 10f64.powi(decades);
    let ymax = series
        .iter()
        .map(|(_, h)| h.max() as f64 / 1000.0)
        .fold(0.001, f64::max)
        * 1.08;

    let root = SVGBackend::new(path, (1100, 650)).into_drawing_area();
    let e = |e: &dyn std::fmt::Debug| format!("plot {}: {e:?}", path.display());
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((1f64..xmax).log_scale(), 0f64..ymax)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|v| pct_label(*v))
        .draw()
        .map_err(|x| e(&x))?;
    for (i, (name, h)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(curve(h, xmax), c.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(format!("{name} (n={})", h.len()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
