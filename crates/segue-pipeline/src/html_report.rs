//! `report/index.html`: the report as a page to look at. Self-contained (every figure inline,
//! no script, no network), beside the same figures as SVG files in `report/figures/`. The
//! figures are drawn with plotters' SVG backend; the tables are the markdown report's, as HTML.
//!
//! Each [`Figure`] names the series it draws; the tests parse every SVG and the page and check
//! that each series is there.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use segue_model::Epoch;

use segue_model::Variant;

use crate::report::{Method, Outcome, over_seeds};
use crate::user_study::Study;

/// One figure of the report.
#[derive(Debug, Clone)]
pub struct Figure {
    /// File name under `figures/` (`hr_at_k.svg`).
    pub file: String,
    pub title: String,
    /// What it shows, in a sentence.
    pub caption: String,
    /// The names of its series, as its legend (or axis) shows them.
    pub series: Vec<String>,
    pub svg: String,
}

/// What the figures are drawn from.
pub struct Inputs<'a> {
    pub pipeline: &'a str,
    /// The markdown report (tables), shown under the figures.
    pub markdown: &'a str,
    pub results: &'a BTreeMap<Method, Outcome>,
    /// Each trained model's epochs, per seed.
    pub histories: BTreeMap<Method, Vec<Vec<Epoch>>>,
    /// Every kept session's length.
    pub session_lengths: Vec<usize>,
    /// User names by index, as the evaluation's per-user figures number them.
    pub user_names: Vec<String>,
    pub study: &'a Study,
}

/// The plot's width; the legend is drawn beside it, [`LEGEND_WIDTH`] more.
const WIDTH: u32 = 800;
const HEIGHT: u32 = 440;
/// The legend's column to the right of a plot (outside it: a legend inside covers data).
const LEGEND_WIDTH: u32 = 250;

/// Sixteen colours told apart at a glance (Tableau's ten, then six darker ones): every series
/// of a figure gets its own (the methods of Table II are 14 at most).
fn palette(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 16] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
        RGBColor(0, 0, 0),
        RGBColor(0, 0, 128),
        RGBColor(128, 0, 0),
        RGBColor(0, 110, 110),
        RGBColor(110, 110, 0),
        RGBColor(200, 0, 200),
    ];
    COLORS[i % COLORS.len()]
}

/// How a legend entry shows its series.
#[derive(Clone, Copy)]
enum Mark {
    Line,
    Block,
}

/// The figure's drawing area split into the plot and the legend's column beside it.
type Areas<'a> = (
    DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
    DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
);

/// A white figure of `(width, height)` plus the legend column, split.
fn canvas(svg: &mut String, (width, height): (u32, u32)) -> Result<Areas<'_>> {
    let root = SVGBackend::with_string(svg, (width + LEGEND_WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    Ok(root.split_horizontally(width))
}

/// The legend in its column: one entry per series, its mark then its name.
fn side_legend(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    entries: &[(&str, RGBColor)],
    mark: Mark,
) -> Result<()> {
    let font = ("sans-serif", 13).into_font();
    for (i, &(name, color)) in entries.iter().enumerate() {
        let y = 48 + 20 * i as i32;
        match mark {
            Mark::Line => {
                area.draw(&PathElement::new(vec![(4, y), (26, y)], color.stroke_width(3)))
            }
            Mark::Block => area.draw(&Rectangle::new([(9, y - 6), (21, y + 6)], color.filled())),
        }
        .map_err(plot_err)?;
        area.draw(&Text::new(name, (34, y - 7), font.clone())).map_err(plot_err)?;
    }
    Ok(())
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a figure: {e:?}")
}

/// The methods that have runs, in table order, with their runs.
fn ran(results: &BTreeMap<Method, Outcome>) -> Vec<(Method, &[crate::report::Run])> {
    results
        .iter()
        .filter_map(|(m, o)| match o {
            Outcome::Runs(runs) if !runs.is_empty() => Some((*m, runs.as_slice())),
            _ => None,
        })
        .collect()
}

/// HR@k against k per method, the mean over seeds with its 95% interval as error bars.
fn hr_at_k(results: &BTreeMap<Method, Outcome>) -> Result<Figure> {
    let methods = ran(results);
    let ks = segue_eval::PAPER_KS;
    let mut curves = Vec::new();
    for (m, runs) in &methods {
        let points: Vec<(f64, f64, f64)> = ks
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                let iv = over_seeds(runs, |r| r.all.hit[i]);
                (k as f64, iv.mean, iv.half_width)
            })
            .collect();
        curves.push((m.name().to_string(), points));
    }
    let top = curves.iter().flat_map(|(_, p)| p.iter().map(|q| q.1 + q.2)).fold(1.0, f64::max);
    let mut svg = String::new();
    {
        let (plot, key) = canvas(&mut svg, (WIDTH, HEIGHT + 80))?;
        let mut chart = ChartBuilder::on(&plot)
            .caption("HitRatio@k on the test sessions", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(5f64..55f64, 0f64..top * 1.08)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("k")
            .y_desc("HR@k (%)")
            .x_labels(5)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(plot_err)?;
        for (i, (_, points)) in curves.iter().enumerate() {
            let color = palette(i);
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|p| (p.0, p.1)),
                    color.stroke_width(2),
                ))
                .map_err(plot_err)?;
            chart
                .draw_series(points.iter().map(|p| Circle::new((p.0, p.1), 3, color.filled())))
                .map_err(plot_err)?;
            chart
                .draw_series(points.iter().filter(|p| p.2 > 0.0).map(|p| {
                    ErrorBar::new_vertical(p.0, p.1 - p.2, p.1, p.1 + p.2, color.stroke_width(1), 6)
                }))
                .map_err(plot_err)?;
        }
        side_legend(&key, &entries(curves.iter().map(|c| c.0.as_str())), Mark::Line)?;
        plot.present().map_err(plot_err)?;
    }
    Ok(Figure {
        file: "hr_at_k.svg".into(),
        title: "HitRatio@k".into(),
        caption: "Mean over seeds; bars: half the 95% t-interval (models trained once per seed; rules are deterministic).".into(),
        series: curves.into_iter().map(|c| c.0).collect(),
        svg,
    })
}

/// Series names with their palette colours, in order.
fn entries<'a>(names: impl Iterator<Item = &'a str>) -> Vec<(&'a str, RGBColor)> {
    names.enumerate().map(|(i, n)| (n, palette(i))).collect()
}

/// One value per epoch per variant: the mean over the seeds that reached that epoch.
fn per_epoch(seeds: &[Vec<Epoch>], pick: impl Fn(&Epoch) -> Option<f64>) -> Vec<(f64, f64)> {
    let longest = seeds.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .filter_map(|e| {
            let v: Vec<f64> = seeds.iter().filter_map(|s| s.get(e).and_then(&pick)).collect();
            (!v.is_empty()).then(|| ((e + 1) as f64, v.iter().sum::<f64>() / v.len() as f64))
        })
        .collect()
}

/// A line chart of one value per epoch, one line per trained method.
fn training(
    histories: &BTreeMap<Method, Vec<Vec<Epoch>>>,
    file: &str,
    title: &str,
    y_desc: &str,
    pick: impl Fn(&Epoch) -> Option<f64> + Copy,
) -> Result<Option<Figure>> {
    let curves: Vec<(String, Vec<(f64, f64)>)> = histories
        .iter()
        .map(|(m, seeds)| (m.name().to_string(), per_epoch(seeds, pick)))
        .filter(|(_, points)| !points.is_empty())
        .collect();
    if curves.is_empty() {
        return Ok(None);
    }
    let epochs = curves.iter().flat_map(|c| c.1.iter().map(|p| p.0)).fold(1.0, f64::max);
    let (lo, hi) = curves
        .iter()
        .flat_map(|c| c.1.iter().map(|p| p.1))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let pad = ((hi - lo) * 0.08).max(1e-3);
    let mut svg = String::new();
    {
        let (plot, key) = canvas(&mut svg, (WIDTH, HEIGHT))?;
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.5f64..epochs + 0.5, (lo - pad)..(hi + pad))
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(y_desc)
            .x_labels((epochs as usize).min(20))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(plot_err)?;
        for (i, (_, points)) in curves.iter().enumerate() {
            let color = palette(i);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
                .map_err(plot_err)?;
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(plot_err)?;
        }
        side_legend(&key, &entries(curves.iter().map(|c| c.0.as_str())), Mark::Line)?;
        plot.present().map_err(plot_err)?;
    }
    Ok(Some(Figure {
        file: file.into(),
        title: title.into(),
        caption: "Per epoch, the mean over the seeds that trained that long (early stopping ends seeds at different epochs).".into(),
        series: curves.into_iter().map(|c| c.0).collect(),
        svg,
    }))
}

/// Grouped bars: one group per category, one bar per series, optional error bars.
struct Bars<'a> {
    file: &'a str,
    title: &'a str,
    caption: String,
    y_desc: &'a str,
    categories: Vec<String>,
    /// (series name, one (value, half width) per category).
    series: Vec<(String, Vec<(f64, f64)>)>,
    /// Categories down the side, bars across (long category names stay readable).
    horizontal: bool,
}

fn bars(b: Bars<'_>) -> Result<Figure> {
    let n_cat = b.categories.len().max(1);
    let n_ser = b.series.len().max(1);
    let top = b.series.iter().flat_map(|s| s.1.iter().map(|v| v.0 + v.1)).fold(1.0, f64::max);
    let slot = 0.8 / n_ser as f64;
    // Category c's bar of series j spans [x0, x0 + width) on the category axis.
    let x0 = |c: usize, j: usize| c as f64 + 0.1 + j as f64 * slot;
    let width = slot * 0.9;
    let cats = b.categories.clone();
    let label = move |x: &f64| {
        let i = (x - 0.5).round();
        if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
            cats.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let mut svg = String::new();
    {
        let height = if b.horizontal { (n_cat * (n_ser * 7 + 14) + 120) as u32 } else { HEIGHT };
        let (plot, key) = canvas(&mut svg, (WIDTH, height.max(HEIGHT)))?;
        let longest = b.categories.iter().map(|c| c.chars().count()).max().unwrap_or(0);
        let mut builder = ChartBuilder::on(&plot);
        builder.caption(b.title, ("sans-serif", 18)).margin(12);
        if b.horizontal {
            builder.x_label_area_size(40).y_label_area_size((longest * 7 + 20).min(260) as u32);
            let mut chart = builder
                .build_cartesian_2d(0f64..top * 1.1, 0f64..n_cat as f64)
                .map_err(plot_err)?;
            // The first category at the top.
            let flip = |y: &f64| label(&(n_cat as f64 - y));
            chart
                .configure_mesh()
                .disable_y_mesh()
                .x_desc(b.y_desc)
                .y_labels(n_cat * 2 + 1)
                .y_label_formatter(&flip)
                .draw()
                .map_err(plot_err)?;
            for (j, (_, values)) in b.series.iter().enumerate() {
                let color = palette(j);
                let y0 = |c: usize| n_cat as f64 - x0(c, j) - width;
                chart
                    .draw_series(values.iter().enumerate().map(|(c, v)| {
                        Rectangle::new([(0.0, y0(c)), (v.0, y0(c) + width)], color.filled())
                    }))
                    .map_err(plot_err)?;
                chart
                    .draw_series(values.iter().enumerate().filter(|(_, v)| v.1 > 0.0).map(
                        |(c, v)| {
                            let y = y0(c) + width / 2.0;
                            let style = BLACK.stroke_width(1);
                            ErrorBar::new_horizontal(y, v.0 - v.1, v.0, v.0 + v.1, style, 4)
                        },
                    ))
                    .map_err(plot_err)?;
            }
        } else {
            builder.x_label_area_size(60).y_label_area_size(50);
            let mut chart = builder
                .build_cartesian_2d(0f64..n_cat as f64, 0f64..top * 1.15)
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .y_desc(b.y_desc)
                .x_labels(n_cat * 2 + 1)
                .x_label_formatter(&label)
                .draw()
                .map_err(plot_err)?;
            for (j, (_, values)) in b.series.iter().enumerate() {
                let color = palette(j);
                chart
                    .draw_series(values.iter().enumerate().map(|(c, v)| {
                        Rectangle::new([(x0(c, j), 0.0), (x0(c, j) + width, v.0)], color.filled())
                    }))
                    .map_err(plot_err)?;
                chart
                    .draw_series(values.iter().enumerate().filter(|(_, v)| v.1 > 0.0).map(
                        |(c, v)| {
                            let x = x0(c, j) + width / 2.0;
                            let style = BLACK.stroke_width(1);
                            ErrorBar::new_vertical(x, v.0 - v.1, v.0, v.0 + v.1, style, 4)
                        },
                    ))
                    .map_err(plot_err)?;
            }
        }
        side_legend(&key, &entries(b.series.iter().map(|s| s.0.as_str())), Mark::Block)?;
        plot.present().map_err(plot_err)?;
    }
    Ok(Figure {
        file: b.file.into(),
        title: b.title.into(),
        caption: b.caption,
        series: b.series.into_iter().map(|s| s.0).collect(),
        svg,
    })
}

/// The methods the per-user figure shows: ANN (the paper's base), then the three best others
/// by HR@10 over every prediction (14 series over every user would be unreadable).
fn per_user_methods<'a>(
    methods: &[(Method, &'a [crate::report::Run])],
) -> Vec<(Method, &'a [crate::report::Run])> {
    let hr10 = |runs: &[crate::report::Run]| over_seeds(runs, |r| r.all.hit[0]).mean;
    let mut others: Vec<_> =
        methods.iter().filter(|(m, _)| *m != Method::Model(Variant::Ann)).copied().collect();
    others.sort_by(|a, b| hr10(b.1).total_cmp(&hr10(a.1)));
    let ann = methods.iter().find(|(m, _)| *m == Method::Model(Variant::Ann)).copied();
    ann.into_iter().chain(others.into_iter().take(3)).collect()
}

/// HR@10 per user for ANN and the best three other methods (mean over seeds): bars per user
/// up to 12 users, else one point per user, users in the order of the first method's HR@10.
fn per_user(results: &BTreeMap<Method, Outcome>, user_names: &[String]) -> Result<Figure> {
    let methods = per_user_methods(&ran(results));
    let users: Vec<u32> = methods
        .first()
        .map(|(_, runs)| runs[0].report.users.keys().copied().collect())
        .unwrap_or_default();
    let name = |u: u32| user_names.get(u as usize).cloned().unwrap_or_else(|| format!("user {u}"));
    let series: Vec<(String, Vec<(f64, f64)>)> = methods
        .iter()
        .map(|(m, runs)| {
            let values = users
                .iter()
                .map(|u| {
                    let v: Vec<f64> = runs
                        .iter()
                        .filter_map(|r| r.report.users.get(u).map(|x| 100.0 * x.hit[0]))
                        .collect();
                    (v.iter().sum::<f64>() / v.len().max(1) as f64, 0.0)
                })
                .collect();
            (m.name().to_string(), values)
        })
        .collect();
    let shown = series.iter().map(|s| s.0.as_str()).collect::<Vec<_>>().join(", ");
    if users.len() <= 12 {
        return bars(Bars {
            file: "per_user.svg",
            title: "HitRatio@10 per user",
            caption: format!(
                "Each user's HR@10 over their own test predictions, mean over seeds: {shown} (ANN and the three best other methods)."
            ),
            y_desc: "HR@10 (%)",
            categories: users.into_iter().map(name).collect(),
            series,
            horizontal: true,
        });
    }
    user_points(
        &series,
        &format!(
            "Each user's HR@10 over their own test predictions, mean over seeds, {} users sorted by {}'s: {shown} (ANN and the three best other methods).",
            users.len(),
            series[0].0
        ),
    )
}

/// [`per_user`] for many users: one point per user and method, users sorted by the first
/// series.
fn user_points(series: &[(String, Vec<(f64, f64)>)], caption: &str) -> Result<Figure> {
    let n = series.first().map_or(0, |s| s.1.len());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| series[0].1[a].0.total_cmp(&series[0].1[b].0));
    let top = series.iter().flat_map(|s| s.1.iter().map(|v| v.0)).fold(1.0, f64::max);
    let mut svg = String::new();
    {
        let (plot, key) = canvas(&mut svg, (WIDTH, HEIGHT))?;
        let mut chart = ChartBuilder::on(&plot)
            .caption("HitRatio@10 per user", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..n as f64 + 1.0, 0f64..top * 1.08)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(format!("users, sorted by {}'s HR@10", series[0].0))
            .y_desc("HR@10 (%)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(plot_err)?;
        for (j, (_, values)) in series.iter().enumerate() {
            let color = palette(j);
            let points: Vec<(f64, f64)> =
                order.iter().enumerate().map(|(x, &u)| (x as f64 + 1.0, values[u].0)).collect();
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.mix(0.5).stroke_width(1),
                ))
                .map_err(plot_err)?;
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(plot_err)?;
        }
        side_legend(&key, &entries(series.iter().map(|s| s.0.as_str())), Mark::Line)?;
        plot.present().map_err(plot_err)?;
    }
    Ok(Figure {
        file: "per_user.svg".into(),
        title: "HitRatio@10 per user".into(),
        caption: caption.into(),
        series: series.iter().map(|s| s.0.clone()).collect(),
        svg,
    })
}

/// HR@10 on targets seen / unseen in training and repeated / new in their session.
fn breakdown(results: &BTreeMap<Method, Outcome>) -> Result<Figure> {
    let methods = ran(results);
    // The labels of segue_model::BREAKDOWNS, in its order.
    let labels = [
        "seen in training",
        "never seen in training",
        "repeat in the session",
        "new to the session",
    ];
    let series = segue_model::BREAKDOWNS
        .iter()
        .zip(labels)
        .map(|(group, label)| {
            let values = methods
                .iter()
                .map(|(_, runs)| {
                    // A report without the group (none of its predictions) has no hit there.
                    let pick = |r: &segue_eval::Report| r.group(group).map_or(0.0, |m| m.hit[0]);
                    let iv = over_seeds(runs, pick);
                    (iv.mean, iv.half_width)
                })
                .collect();
            (label.to_string(), values)
        })
        .collect();
    bars(Bars {
        file: "breakdown.svg",
        title: "HitRatio@10 by kind of target",
        caption: "Test targets split by whether training saw them and whether their session played them before; mean over seeds with the 95% interval.".into(),
        y_desc: "HR@10 (%)",
        categories: methods.iter().map(|(m, _)| m.name().to_string()).collect(),
        series,
        horizontal: true,
    })
}

/// Table IV as grouped bars: HR@k per group.
fn table4(study: &Study) -> Result<Option<Figure>> {
    let Study::Ran { variant, groups } = study else { return Ok(None) };
    let ks = segue_eval::PAPER_KS;
    let series = groups
        .iter()
        .map(|g| {
            let values = (0..ks.len())
                .map(|i| {
                    let iv = over_seeds(&g.runs, |r| r.all.hit[i]);
                    (iv.mean, iv.half_width)
                })
                .collect();
            (g.group.name.clone(), values)
        })
        .collect();
    Ok(Some(bars(Bars {
        file: "table4.svg",
        title: "Table IV: HitRatio@k per K-10 group",
        caption: format!(
            "{} trained and evaluated on each group's own sessions; mean over seeds with the 95% interval.",
            variant.paper_name()
        ),
        y_desc: "HR@k (%)",
        categories: ks.iter().map(|k| format!("HR@{k}")).collect(),
        series,
        horizontal: false,
    })?))
}

/// Table I's session lengths as a histogram (bins of 5 plays; the last bin holds the rest).
fn session_lengths(lengths: &[usize]) -> Result<Figure> {
    const BIN: usize = 5;
    const BINS: usize = 40;
    let mut counts = [0u32; BINS];
    for &l in lengths {
        counts[(l / BIN).min(BINS - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1);
    let mut svg = String::new();
    {
        let (plot, key) = canvas(&mut svg, (WIDTH, HEIGHT))?;
        let mut chart = ChartBuilder::on(&plot)
            .caption("Session lengths (Table I)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((0u32..BINS as u32).into_segmented(), 0u32..top + top / 10 + 1)
            .map_err(plot_err)?;
        // One segment per bin, labelled by its first length.
        let bin_label = |v: &SegmentValue<u32>| match v {
            SegmentValue::Exact(i) | SegmentValue::CenterOf(i) => (*i as usize * BIN).to_string(),
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(BINS / 4)
            .x_label_formatter(&bin_label)
            .x_desc(format!(
                "plays per session (bins of {BIN}, labelled by their first length; the last: {} or more)",
                (BINS - 1) * BIN
            ))
            .y_desc("sessions")
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(palette(0).filled())
                    .margin(1)
                    .data(counts.iter().enumerate().map(|(i, &c)| (i as u32, c))),
            )
            .map_err(plot_err)?;
        side_legend(&key, &[("sessions", palette(0))], Mark::Block)?;
        plot.present().map_err(plot_err)?;
    }
    Ok(Figure {
        file: "session_lengths.svg".into(),
        title: "Session lengths".into(),
        caption: format!("{} sessions kept by sessionize, every split.", lengths.len()),
        series: vec!["sessions".into()],
        svg,
    })
}

/// Every figure the inputs allow, in the page's order.
pub fn figures(inputs: &Inputs<'_>) -> Result<Vec<Figure>> {
    let mut out = vec![hr_at_k(inputs.results)?];
    if let Some(f) =
        training(&inputs.histories, "training_loss.svg", "Training loss per epoch", "loss", |e| {
            Some(e.loss)
        })?
    {
        out.push(f);
    }
    if let Some(f) = training(
        &inputs.histories,
        "training_valid_hr10.svg",
        "Validation HitRatio@10 per epoch",
        "HR@10 (%)",
        |e| e.valid_hr10.map(|v| 100.0 * v),
    )? {
        out.push(f);
    }
    out.push(per_user(inputs.results, &inputs.user_names)?);
    out.push(breakdown(inputs.results)?);
    if let Some(f) = table4(inputs.study)? {
        out.push(f);
    }
    out.push(session_lengths(&inputs.session_lengths)?);
    Ok(out)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A table cell's text as HTML: escaped, and a cell wholly in `*...*` (a block's name, such
/// as *beyond the paper*) in italics.
fn inline(cell: &str) -> String {
    match cell.strip_prefix('*').and_then(|c| c.strip_suffix('*')) {
        Some(inner) if !inner.is_empty() => format!("<em>{}</em>", escape(inner)),
        _ => escape(cell),
    }
}

/// The markdown report's headings, tables and paragraphs as HTML (what the report writes, no
/// general markdown).
fn markdown_html(md: &str) -> String {
    let mut html = String::new();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let flush = |rows: &mut Vec<Vec<String>>, html: &mut String| {
        if rows.is_empty() {
            return;
        }
        html.push_str("<table>\n");
        for (i, row) in rows.iter().enumerate() {
            let tag = if i == 0 { "th" } else { "td" };
            html.push_str("<tr>");
            for cell in row {
                let _ = write!(html, "<{tag}>{}</{tag}>", inline(cell.trim()));
            }
            html.push_str("</tr>\n");
        }
        html.push_str("</table>\n");
        rows.clear();
    };
    for line in md.lines() {
        let t = line.trim();
        if t.starts_with('|') {
            let cells: Vec<String> =
                t.trim_matches('|').split('|').map(|c| c.replace('`', "")).collect();
            let separator = cells.iter().all(|c| c.trim().chars().all(|ch| "-: ".contains(ch)));
            if !separator {
                rows.push(cells);
            }
            continue;
        }
        flush(&mut rows, &mut html);
        if let Some(h) = t.strip_prefix("## ") {
            let _ = writeln!(html, "<h2>{}</h2>", escape(h));
        } else if let Some(h) = t.strip_prefix("# ") {
            let _ = writeln!(html, "<h2>{}</h2>", escape(h));
        } else if !t.is_empty() {
            let _ = writeln!(html, "<p>{}</p>", escape(&t.replace('`', "")));
        }
    }
    flush(&mut rows, &mut html);
    html
}

/// The page: figures inline, then the tables.
pub fn page(pipeline: &str, figures: &[Figure], markdown: &str) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>segue report: {p}</title>\n<style>\nbody {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}\nfigure {{ margin: 2em 0; }} figcaption {{ color: #555; }}\ntable {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}\nth, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}\nth:first-child, td:first-child {{ text-align: left; }}\nsvg {{ max-width: 100%; height: auto; }}\n</style>\n</head>\n<body>\n<h1>segue report: {p}</h1>\n<p>Figures first (also in figures/*.svg), then the tables of report.md.</p>\n",
        p = escape(pipeline)
    );
    html.push_str("<ul>\n");
    for f in figures {
        let _ = writeln!(html, "<li><a href=\"#{}\">{}</a></li>", f.file, escape(&f.title));
    }
    html.push_str("</ul>\n");
    for f in figures {
        let _ = write!(
            html,
            "<figure id=\"{}\">\n{}\n<figcaption>{} Series: {}.</figcaption>\n</figure>\n",
            f.file,
            f.svg.trim(),
            escape(&f.caption),
            escape(&f.series.join(", "))
        );
    }
    html.push_str(&markdown_html(markdown));
    html.push_str("</body>\n</html>\n");
    html
}

/// Writes `index.html` and `figures/*.svg` into `report_dir`; returns the page's path.
pub fn write(report_dir: &Path, inputs: &Inputs<'_>) -> Result<PathBuf> {
    let figures = figures(inputs)?;
    let dir = report_dir.join("figures");
    std::fs::create_dir_all(&dir)?;
    for f in &figures {
        segue_core::fs::write_bytes_atomic(&dir.join(&f.file), f.svg.as_bytes())?;
    }
    let path = report_dir.join("index.html");
    segue_core::fs::write_bytes_atomic(
        &path,
        page(inputs.pipeline, &figures, inputs.markdown).as_bytes(),
    )?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Run;
    use segue_baselines::Rule;
    use segue_model::Variant;

    /// A run whose predictions hit at rank `rank` for user 0 and miss for user 1.
    fn run(seed: u64, rank: usize) -> Run {
        let groups = segue_model::BREAKDOWNS;
        let mut e =
            segue_eval::Evaluator::with_groups(&segue_eval::PAPER_KS, 100, &groups).unwrap();
        let mut ranks = Vec::new();
        for i in 0..20u32 {
            let q = segue_eval::Query::new(i % 2, i)
                .in_group(if i % 3 != 0 { 0 } else { 1 })
                .in_group(if i % 4 == 0 { 2 } else { 3 });
            let r = if i % 2 == 0 { rank } else { 60 };
            e.add_rank(&q, r).unwrap();
            ranks.push(r);
        }
        Run { seed: Some(seed), report: e.report(), ranks }
    }

    fn epoch(epoch: usize, loss: f64, hr: f64) -> Epoch {
        Epoch {
            epoch,
            loss,
            examples: 100,
            seconds: 1.0,
            examples_per_second: 100.0,
            valid_hr10: Some(hr),
        }
    }

    /// The text of every `<text>` element of a parsed document.
    fn texts(doc: &roxmltree::Document<'_>) -> Vec<String> {
        doc.descendants()
            .filter(|n| n.tag_name().name() == "text")
            .map(|n| {
                n.descendants().filter(|d| d.is_text()).filter_map(|d| d.text()).collect::<String>()
            })
            .map(|t| t.trim().to_string())
            .collect()
    }

    #[test]
    fn every_figure_parses_and_draws_the_series_it_claims() {
        let mut results = BTreeMap::new();
        results.insert(Method::Model(Variant::Ann), Outcome::Runs(vec![run(0, 3), run(1, 12)]));
        results.insert(Method::Model(Variant::Annw), Outcome::Runs(vec![run(0, 1), run(1, 2)]));
        results.insert(Method::Rule(Rule::Popularity), Outcome::Runs(vec![run(0, 40)]));
        results
            .insert(Method::Model(Variant::AnnwLyrics), Outcome::NotApplicable("no lyrics".into()));
        let mut histories = BTreeMap::new();
        histories.insert(
            Method::Model(Variant::Ann),
            vec![vec![epoch(1, 8.0, 0.05), epoch(2, 7.0, 0.07)], vec![epoch(1, 8.2, 0.04)]],
        );
        histories.insert(Method::Model(Variant::Annw), vec![vec![epoch(1, 7.5, 0.06)]]);
        let study = Study::NotApplicable("no K-10 scores".into());
        let inputs = Inputs {
            pipeline: "test",
            markdown: "## Table II\n\n| method | HR@10 |\n|---|---:|\n| ANN | 5.0 |\n\nA note with <angle> & `code`.\n",
            results: &results,
            histories,
            session_lengths: vec![5, 7, 12, 40, 300],
            user_names: vec!["alice".into(), "bob".into()],
            study: &study,
        };
        let figures = figures(&inputs).unwrap();
        let files: Vec<&str> = figures.iter().map(|f| f.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "hr_at_k.svg",
                "training_loss.svg",
                "training_valid_hr10.svg",
                "per_user.svg",
                "breakdown.svg",
                "session_lengths.svg"
            ]
        );
        for f in &figures {
            let doc = roxmltree::Document::parse(&f.svg)
                .unwrap_or_else(|e| panic!("{} is not XML: {e}", f.file));
            assert_eq!(doc.root_element().tag_name().name(), "svg", "{}", f.file);
            let texts = texts(&doc);
            assert!(!f.series.is_empty(), "{}", f.file);
            for s in &f.series {
                assert!(
                    texts.iter().any(|t| t == s),
                    "{}: no legend entry {s:?} in {texts:?}",
                    f.file
                );
            }
        }
        // The methods with runs, not the one without.
        assert_eq!(figures[0].series, ["ANN", "ANNW", "Popularity"]);
        assert_eq!(figures[1].series, ["ANN", "ANNW"]);
        assert_eq!(figures[4].series.len(), 4);
        let per_user = roxmltree::Document::parse(&figures[3].svg).unwrap();
        let labels = texts(&per_user);
        assert!(labels.iter().any(|t| t == "alice") && labels.iter().any(|t| t == "bob"));

        let html = page("test", &figures, inputs.markdown);
        // `<!DOCTYPE html>` is a DTD to an XML parser.
        let options = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
        let doc = roxmltree::Document::parse_with_options(&html, options)
            .expect("the page is well-formed XHTML");
        let svgs = doc.descendants().filter(|n| n.tag_name().name() == "svg").count();
        assert_eq!(svgs, figures.len(), "every figure inline");
        for f in &figures {
            assert!(doc.descendants().any(|n| n.attribute("id") == Some(f.file.as_str())));
        }
        let cells: Vec<&str> = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "td")
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(cells, ["ANN", "5.0"], "the markdown table as HTML");
        assert!(!html.contains("<script"));
    }

    /// Past 12 users the per-user figure is one point per user, users in the first
    /// series' order.
    #[test]
    fn many_users_are_points_in_order() {
        let series: Vec<(String, Vec<(f64, f64)>)> = ["ANN", "SR"]
            .iter()
            .enumerate()
            .map(|(j, n)| (n.to_string(), (0..15).map(|u| ((15 - u + j) as f64, 0.0)).collect()))
            .collect();
        let f = user_points(&series, "caption").unwrap();
        let doc = roxmltree::Document::parse(&f.svg).unwrap();
        let texts = texts(&doc);
        for s in ["ANN", "SR", "users, sorted by ANN's HR@10"] {
            assert!(texts.iter().any(|t| t == s), "{s} in {texts:?}");
        }
        // One marker per user and series.
        let circles = doc.descendants().filter(|n| n.tag_name().name() == "circle").count();
        assert_eq!(circles, 30);
    }

    #[test]
    fn table4_draws_one_bar_series_per_group() {
        use crate::user_study::{Group, GroupRuns};
        let group = |name: &str, rank| GroupRuns {
            group: Group {
                name: name.into(),
                slug: name.to_lowercase(),
                users: vec![],
                k10: vec![],
                train_sessions: 1,
                test_sessions: 1,
                test_predictions: 20,
                test_repeat_share: 0.1,
                repeat_share: 0.1,
            },
            runs: vec![run(0, rank), run(1, rank + 1)],
        };
        let study = Study::Ran {
            variant: Variant::AnnwAcoustic,
            groups: vec![group("At-risk-2", 1), group("No-risk-3", 20), group("No-risk-2", 30)],
        };
        let f = table4(&study).unwrap().expect("the study ran");
        assert_eq!(f.series, ["At-risk-2", "No-risk-3", "No-risk-2"]);
        let doc = roxmltree::Document::parse(&f.svg).unwrap();
        let texts = texts(&doc);
        for s in f.series.iter().chain(["HR@10".to_string(), "HR@50".to_string()].iter()) {
            assert!(texts.contains(s), "{s} in {texts:?}");
        }
        assert!(table4(&Study::NotApplicable("none".into())).unwrap().is_none());
    }
}
