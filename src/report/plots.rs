//! `fer-lab report --plots DIR`: the report's figures as PNG and SVG (plotters) — learning
//! curves of the top cells (mean over seeds with a ±sd band), per-key effects with error bars,
//! the best cell's confusion matrix as a heatmap, and its per-class F1.
//!
//! Text is drawn with DejaVu Sans, shipped in `assets/fonts/` (Bitstream Vera license): PNGs
//! then look the same on every machine, with no system font lookup.

use super::ReportError;
use super::analysis::Analysis;
use crate::emotion::Emotion;
use crate::stats::Summary;
use crate::store::Store;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// Every figure's size in pixels (and SVG units).
pub const SIZE: (u32, u32) = (960, 600);
/// Learning curves of this many cells at most.
const TOP_CELLS: usize = 5;

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            plotters::style::register_font("sans-serif", style, FONT)
                .unwrap_or_else(|_| panic!("the bundled DejaVu Sans is a valid font"));
        }
    });
}

/// The mean (± sd) val accuracy per epoch of one cell.
pub struct CellCurve {
    pub label: String,
    /// (epoch, summary over the cell's runs that reached it).
    pub points: Vec<(usize, Summary)>,
}

/// Reads the epochs of the top cells' runs.
pub fn curves(store: &Store, a: &Analysis) -> Result<Vec<CellCurve>, ReportError> {
    let mut out = Vec::new();
    for cell in a.cells.iter().take(TOP_CELLS) {
        let mut by_epoch: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for &i in &cell.runs {
            let rows = store.val_accuracies(&a.runs[i].id)?;
            for (epoch, acc) in rows {
                by_epoch.entry(epoch).or_default().push(acc);
            }
        }
        let label = a
            .axes
            .iter()
            .zip(&cell.params)
            .filter(|(_, v)| v.as_str() != "-")
            .map(|(k, v)| format!("{}={v}", k.rsplit('.').next().unwrap_or(k)))
            .collect::<Vec<_>>()
            .join(" ");
        out.push(CellCurve {
            label: if label.is_empty() {
                "all runs".into()
            } else {
                label
            },
            points: by_epoch
                .into_iter()
                .filter_map(|(e, v)| Summary::of(&v).map(|s| (e, s)))
                .collect(),
        });
    }
    Ok(out)
}

type Plot<'a, DB> = DrawingArea<DB, Shift>;

/// Why a figure could not be drawn or encoded: plotters' errors differ by backend, so the
/// message is what they have in common.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PlotError(String);

fn err(e: impl std::fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

fn draw_curves<DB: DrawingBackend>(root: &Plot<DB>, curves: &[CellCurve]) -> Result<(), PlotError> {
    root.fill(&WHITE).map_err(err)?;
    let epochs = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.0))
        .max()
        .unwrap_or(1)
        .max(2);
    let (lo, hi) = curves
        .iter()
        .flat_map(|c| {
            c.points
                .iter()
                .map(|p| (p.1.mean - p.1.sd, p.1.mean + p.1.sd))
        })
        .fold((1.0f64, 0.0f64), |(l, h), (a, b)| (l.min(a), h.max(b)));
    let (lo, hi) = if lo >= hi { (0.0, 1.0) } else { (lo, hi) };
    let pad = (hi - lo) * 0.05;
    let mut chart = ChartBuilder::on(root)
        .caption(
            "Val accuracy of the top cells (mean over seeds, band ±1 sd)",
            ("sans-serif", 24),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(
            1f64..epochs as f64,
            (100.0 * (lo - pad))..(100.0 * (hi + pad)),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("val accuracy %")
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(err)?;
    for (i, c) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let upper: Vec<(f64, f64)> = c
            .points
            .iter()
            .map(|(e, s)| (*e as f64, 100.0 * (s.mean + s.sd)))
            .collect();
        let lower: Vec<(f64, f64)> = c
            .points
            .iter()
            .rev()
            .map(|(e, s)| (*e as f64, 100.0 * (s.mean - s.sd)))
            .collect();
        let band: Vec<(f64, f64)> = upper.into_iter().chain(lower).collect();
        chart
            .draw_series(std::iter::once(Polygon::new(
                band,
                color.mix(0.15).filled(),
            )))
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                c.points.iter().map(|(e, s)| (*e as f64, 100.0 * s.mean)),
                color.stroke_width(3),
            ))
            .map_err(err)?
            .label(format!(
                "{} (n={})",
                c.label,
                c.points.first().map_or(0, |p| p.1.n)
            ))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present().map_err(err)
}

/// The series legend every figure with several series draws, boxed at `position`.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), PlotError> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

/// One key's effect: its values' means with ±sd error bars.
fn draw_effect<DB: DrawingBackend>(
    root: &Plot<DB>,
    a: &Analysis,
    key: &str,
) -> Result<(), PlotError> {
    root.fill(&WHITE).map_err(err)?;
    let effects: Vec<_> = a.effects.iter().filter(|e| e.key == key).collect();
    let n = effects.len().max(1);
    let hi = effects
        .iter()
        .map(|e| e.val.mean + e.val.sd)
        .fold(0.0f64, f64::max)
        .max(0.01);
    let lo = effects
        .iter()
        .map(|e| e.val.mean - e.val.sd)
        .fold(f64::INFINITY, f64::min)
        .min(hi);
    let floor = (lo - (hi - lo) * 0.5).max(0.0);
    let labels: Vec<String> = effects.iter().map(|e| e.value.clone()).collect();
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("Effect of {key}: val {} by value (±1 sd)", a.metric.name()),
            ("sans-serif", 24),
        )
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(64)
        .build_cartesian_2d(
            // A segmented a..b range has b − a + 1 segments.
            (0..n - 1).into_segmented(),
            (100.0 * floor)..(100.0 * (hi + (hi - floor) * 0.1)),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(key)
        .y_desc(format!("val {} %", a.metric.name()))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(err)?;
    let color = Palette99::pick(0).to_rgba();
    chart
        .draw_series(effects.iter().enumerate().map(|(i, e)| {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 100.0 * floor),
                    (SegmentValue::Exact(i + 1), 100.0 * e.val.mean),
                ],
                color.mix(0.6).filled(),
            );
            bar.set_margin(0, 0, 18, 18);
            bar
        }))
        .map_err(err)?;
    chart
        .draw_series(effects.iter().enumerate().map(|(i, e)| {
            ErrorBar::new_vertical(
                SegmentValue::CenterOf(i),
                100.0 * (e.val.mean - e.val.sd),
                100.0 * e.val.mean,
                100.0 * (e.val.mean + e.val.sd),
                BLACK.stroke_width(2),
                16,
            )
        }))
        .map_err(err)?;
    root.present().map_err(err)
}

fn draw_confusion<DB: DrawingBackend>(root: &Plot<DB>, a: &Analysis) -> Result<(), PlotError> {
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(root)
        .caption(
            "Best cell, test confusion matrix (row-normalised colour, counts)",
            ("sans-serif", 24),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(96)
        .build_cartesian_2d((0..6usize).into_segmented(), (0..6usize).into_segmented())
        .map_err(err)?;
    let name = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) => Emotion::ALL.get(*i).map_or("", |e| e.name()).to_string(),
        _ => String::new(),
    };
    // Rows top to bottom in class order: y is flipped.
    let flip = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) if *i < 7 => name(&SegmentValue::CenterOf(6 - i)),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("predicted")
        .y_desc("true")
        .x_label_formatter(&name)
        .y_label_formatter(&flip)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(err)?;
    for (t, row) in a.confusion.iter().enumerate() {
        let total = row.iter().sum::<i64>().max(1) as f64;
        for (p, &count) in row.iter().enumerate() {
            let share = count as f64 / total;
            let y = 6 - t;
            let shade = RGBColor(
                (255.0 - 200.0 * share) as u8,
                (255.0 - 140.0 * share) as u8,
                255,
            );
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [
                        (SegmentValue::Exact(p), y),
                        (SegmentValue::Exact(p + 1), y + 1),
                    ]
                    .map(|(x, y)| (x, SegmentValue::Exact(y))),
                    shade.filled(),
                )))
                .map_err(err)?;
            let text_color = if share > 0.6 { WHITE } else { BLACK };
            chart
                .draw_series(std::iter::once(Text::new(
                    count.to_string(),
                    (SegmentValue::CenterOf(p), SegmentValue::CenterOf(y)),
                    ("sans-serif", 18).into_font().color(&text_color).pos(
                        plotters::style::text_anchor::Pos::new(
                            plotters::style::text_anchor::HPos::Center,
                            plotters::style::text_anchor::VPos::Center,
                        ),
                    ),
                )))
                .map_err(err)?;
        }
    }
    root.present().map_err(err)
}

fn draw_class_f1<DB: DrawingBackend>(root: &Plot<DB>, a: &Analysis) -> Result<(), PlotError> {
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(root)
        .caption("Best cell, F1 per class (val and test)", ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(56)
        .build_cartesian_2d((0..6usize).into_segmented(), 0f64..1f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("F1")
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => Emotion::ALL.get(*i).map_or("", |e| e.name()).to_string(),
            _ => String::new(),
        })
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(err)?;
    for (series, (name, color, pick)) in [
        ("val", Palette99::pick(0).to_rgba(), 0usize),
        ("test", Palette99::pick(1).to_rgba(), 1usize),
    ]
    .into_iter()
    .enumerate()
    {
        chart
            .draw_series(a.classes.iter().enumerate().map(|(i, c)| {
                let v = if pick == 0 { c.val_f1 } else { c.test_f1 };
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), v),
                    ],
                    color.filled(),
                );
                // Two bars side by side in each class's slot.
                let (l, r) = if series == 0 { (10, 60) } else { (60, 10) };
                bar.set_margin(0, 0, l, r);
                bar
            }))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], color.filled()));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present().map_err(err)
}

/// One figure, drawn by `draw` on any backend.
pub struct Figure<'a> {
    /// File stem: `curves`, `effect-lr`, `confusion`, `class-f1`.
    pub name: String,
    draw: Box<DrawFn<'a>>,
}

type DrawFn<'a> = dyn Fn(Target) -> Result<(), PlotError> + 'a;

/// Where a figure is drawn.
pub enum Target<'t> {
    Svg(&'t mut String),
    Rgb(&'t mut [u8]),
}

fn figure<'a>(
    name: String,
    draw: impl Fn(&Plot<SVGBackend>) -> Result<(), PlotError> + 'a,
    draw_bitmap: impl Fn(&Plot<BitMapBackend>) -> Result<(), PlotError> + 'a,
) -> Figure<'a> {
    Figure {
        name,
        draw: Box::new(move |target| match target {
            Target::Svg(out) => draw(&SVGBackend::with_string(out, SIZE).into_drawing_area()),
            Target::Rgb(buf) => {
                draw_bitmap(&BitMapBackend::with_buffer(buf, SIZE).into_drawing_area())
            }
        }),
    }
}

/// The report's figures.
pub fn figures<'a>(a: &'a Analysis, curves: &'a [CellCurve]) -> Vec<Figure<'a>> {
    register_font();
    let mut out = Vec::new();
    if a.cells.is_empty() {
        return out;
    }
    out.push(figure(
        "curves".into(),
        move |r| draw_curves(r, curves),
        move |r| draw_curves(r, curves),
    ));
    let mut keys: Vec<&str> = a.effects.iter().map(|e| e.key.as_str()).collect();
    keys.dedup();
    for key in keys {
        out.push(figure(
            format!("effect-{}", key.replace(['.', '/', ' '], "-")),
            move |r| draw_effect(r, a, key),
            move |r| draw_effect(r, a, key),
        ));
    }
    out.push(figure(
        "confusion".into(),
        move |r| draw_confusion(r, a),
        move |r| draw_confusion(r, a),
    ));
    out.push(figure(
        "class-f1".into(),
        move |r| draw_class_f1(r, a),
        move |r| draw_class_f1(r, a),
    ));
    out
}

impl Figure<'_> {
    pub fn svg(&self) -> Result<String, PlotError> {
        let mut out = String::new();
        (self.draw)(Target::Svg(&mut out))?;
        Ok(out)
    }

    pub fn png(&self) -> Result<Vec<u8>, PlotError> {
        let mut buf = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
        (self.draw)(Target::Rgb(&mut buf))?;
        let image = image::RgbImage::from_raw(SIZE.0, SIZE.1, buf).expect("buffer matches size");
        let mut out = std::io::Cursor::new(Vec::new());
        image
            .write_to(&mut out, image::ImageFormat::Png)
            .map_err(err)?;
        Ok(out.into_inner())
    }
}

/// Writes every figure as `DIR/<name>.png` and `.svg`; returns the files written.
pub fn write(dir: &Path, figures: &[Figure]) -> Result<Vec<PathBuf>, ReportError> {
    let fail = |path: &Path, why: String| ReportError::Plot(format!("{}: {why}", path.display()));
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e.to_string()))?;
    let mut written = Vec::new();
    for f in figures {
        let svg_path = dir.join(format!("{}.svg", f.name));
        let svg = f.svg().map_err(|e| fail(&svg_path, e.to_string()))?;
        std::fs::write(&svg_path, svg).map_err(|e| fail(&svg_path, e.to_string()))?;
        let png_path = dir.join(format!("{}.png", f.name));
        let png = f.png().map_err(|e| fail(&png_path, e.to_string()))?;
        std::fs::write(&png_path, png).map_err(|e| fail(&png_path, e.to_string()))?;
        written.extend([png_path, svg_path]);
    }
    Ok(written)
}
