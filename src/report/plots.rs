//! The report's pictures, as SVG: match weight per level (bars) and the distribution of
//! candidate-pair scores with the two thresholds marked.
//!
//! No patient data is drawn: only parameters, counts and weights.

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::batch::ScoredPair;
use crate::error::{Error, Result};
use crate::scoring::{prob_to_weight, weight_to_prob, Comparison, Model, Thresholds};

const AGREE: RGBColor = RGBColor(46, 125, 50);
const DISAGREE: RGBColor = RGBColor(198, 40, 40);
const PRIOR: RGBColor = RGBColor(97, 97, 97);
const MATCH: RGBColor = RGBColor(30, 100, 200);
const NON_MATCH: RGBColor = RGBColor(230, 120, 20);
const BAND: RGBColor = RGBColor(242, 242, 242);

fn draw_error(path: &Path) -> impl Fn(String) -> Error + '_ {
    move |e| Error::io(path, std::io::Error::other(e))
}

/// Writes a horizontal bar chart of every level's weight `log2(m/u)`, grouped by
/// comparison, with the prior weight on top.
///
/// # Errors
/// [`Error::Io`] when the file cannot be written.
pub fn match_weights_svg(model: &Model, path: &Path) -> Result<()> {
    let err = draw_error(path);
    // (label, weight, colour, comparison index for banding)
    let mut rows: Vec<(String, f64, RGBColor, usize)> = vec![(
        "prior  log2(λ/(1-λ))".to_string(),
        prob_to_weight(model.prior),
        PRIOR,
        usize::MAX,
    )];
    for c in Comparison::ALL {
        for l in &model.params(c).levels {
            let w = l.weight();
            let colour = if w >= 0.0 { AGREE } else { DISAGREE };
            rows.push((format!("{}: {}", c.name(), l.name), w, colour, c.index()));
        }
    }
    let n = rows.len();
    // Room left of the most negative bar for its value label.
    let lo = rows.iter().map(|r| r.1).fold(0.0f64, f64::min).floor() - 2.5;
    let hi = rows.iter().map(|r| r.1).fold(0.0f64, f64::max).ceil() + 1.0;
    let height = 110 + 19 * n as u32;
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let title = format!("Match weight per level, model {}", model.id);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(230)
        .build_cartesian_2d(lo..hi, (0..n as i32).into_segmented())
        .map_err(|e| err(e.to_string()))?;
    // Row i is drawn at y = n-1-i so the list reads top-down.
    let y = |i: usize| (n - 1 - i) as i32;
    // Light bands behind every other comparison make the groups visible.
    chart
        .draw_series(
            rows.iter()
                .enumerate()
                .filter(|(_, r)| r.3 != usize::MAX && r.3 % 2 == 1)
                .map(|(i, _)| {
                    Rectangle::new(
                        [
                            (lo, SegmentValue::Exact(y(i))),
                            (hi, SegmentValue::Exact(y(i) + 1)),
                        ],
                        BAND.filled(),
                    )
                }),
        )
        .map_err(|e| err(e.to_string()))?;
    let labels: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(k) | SegmentValue::Exact(k) => {
                let i = n as i32 - 1 - *k;
                labels.get(i as usize).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .y_label_style(("sans-serif", 13))
        .x_desc("match weight log2(m/u), bits (missing on either side: 0)")
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(y(i))),
                    (r.1, SegmentValue::Exact(y(i) + 1)),
                ],
                r.2.filled(),
            );
            bar.set_margin(3, 3, 0, 0);
            bar
        }))
        .map_err(|e| err(e.to_string()))?;
    // Value labels just beyond each bar's end.
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            let x = if r.1 >= 0.0 { r.1 + 0.2 } else { r.1 - 0.2 };
            let pos = if r.1 >= 0.0 {
                Pos::new(HPos::Left, VPos::Center)
            } else {
                Pos::new(HPos::Right, VPos::Center)
            };
            Text::new(
                format!("{:+.1}", r.1),
                (x, SegmentValue::CenterOf(y(i))),
                ("sans-serif", 11).into_font().color(&BLACK).pos(pos),
            )
        }))
        .map_err(|e| err(e.to_string()))?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![
                (0.0, SegmentValue::Exact(0)),
                (0.0, SegmentValue::Exact(n as i32)),
            ],
            BLACK.stroke_width(1),
        )))
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// Per 1-bit bin of match weight: (same person, different persons) pair counts; with no
/// labels, the model's expectation (`Σ p`, `Σ (1 − p)`).
fn bins(pairs: &[ScoredPair], labels: Option<&[u32]>, lo: f64, n: usize) -> Vec<(f64, f64)> {
    let mut out = vec![(0.0, 0.0); n];
    for p in pairs {
        let w = p.weight as f64;
        let b = ((w - lo).floor().max(0.0) as usize).min(n - 1);
        let (same, diff) = match labels {
            Some(l) if l[p.a as usize] == l[p.b as usize] => (1.0, 0.0),
            Some(_) => (0.0, 1.0),
            None => {
                let prob = weight_to_prob(w);
                (prob, 1.0 - prob)
            }
        };
        out[b].0 += same;
        out[b].1 += diff;
    }
    out
}

/// Writes a histogram of candidate-pair match weights (log count scale), split into pairs
/// of the same person and of different persons (from ground truth when `labels` are given,
/// else the model's own posterior), with the lower and upper thresholds marked.
///
/// # Errors
/// [`Error::Io`] when the file cannot be written.
pub fn score_distribution_svg(
    pairs: &[ScoredPair],
    labels: Option<&[u32]>,
    thresholds: Thresholds,
    model_id: &str,
    path: &Path,
) -> Result<()> {
    let err = draw_error(path);
    let (mut min, mut max) = (thresholds.lower - 4.0, thresholds.upper + 4.0);
    for p in pairs {
        min = min.min(p.weight as f64);
        max = max.max(p.weight as f64);
    }
    // Scores far out in either tail say nothing more; clip them into the end bins.
    let lo = min.max(-60.0).floor();
    let hi = max.min(80.0).ceil() + 1.0;
    let n = (hi - lo) as usize;
    let counts = bins(pairs, labels, lo, n);
    let top = counts.iter().map(|c| c.0.max(c.1)).fold(1.0f64, f64::max) * 3.0;
    let floor = 0.5;
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let source = if labels.is_some() {
        "ground truth"
    } else {
        "the model's posterior"
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Candidate-pair scores, model {model_id}"),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(lo..hi, (floor..top).log_scale())
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("match weight (log2 odds, prior included; tails clipped into the end bins)")
        .y_desc("pairs per 1-bit bin (log scale)")
        .axis_desc_style(("sans-serif", 15))
        .y_label_formatter(&|v| {
            if *v >= 1.0 {
                format!("{v:.0}")
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(|e| err(e.to_string()))?;
    let series = [
        (1usize, NON_MATCH, format!("different persons ({source})")),
        (0usize, MATCH, format!("same person ({source})")),
    ];
    for (which, colour, label) in series {
        chart
            .draw_series(counts.iter().enumerate().filter_map(|(i, c)| {
                let v = if which == 0 { c.0 } else { c.1 };
                (v > floor).then(|| {
                    let x = lo + i as f64;
                    let mut bar =
                        Rectangle::new([(x, floor), (x + 1.0, v)], colour.mix(0.55).filled());
                    bar.set_margin(0, 0, 1, 1);
                    bar
                })
            }))
            .map_err(|e| err(e.to_string()))?
            .label(label)
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.mix(0.55).filled())
            });
    }
    // The lower label sits left of its line, the upper one right of its own and lower
    // down, so the two never overlap however close the thresholds are.
    let marks = [
        (
            thresholds.lower,
            "lower",
            RGBColor(110, 110, 110),
            -0.4,
            HPos::Right,
            top / 1.8,
        ),
        (thresholds.upper, "upper", BLACK, 0.4, HPos::Left, top / 6.0),
    ];
    for (x, name, colour, dx, anchor, y) in marks {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, floor), (x, top)],
                colour.stroke_width(2),
            )))
            .map_err(|e| err(e.to_string()))?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{name} {x:.1} (p {:.3})", weight_to_prob(x)),
                (x + dx, y),
                ("sans-serif", 13)
                    .into_font()
                    .color(&colour)
                    .pos(Pos::new(anchor, VPos::Center)),
            )))
            .map_err(|e| err(e.to_string()))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_split_by_labels_or_posterior() {
        let pairs = [
            ScoredPair {
                a: 0,
                b: 1,
                weight: 10.2,
                rival: None,
            },
            ScoredPair {
                a: 1,
                b: 2,
                weight: -5.5,
                rival: None,
            },
        ];
        let b = bins(&pairs, Some(&[0, 0, 1]), -10.0, 30);
        assert_eq!(b[20], (1.0, 0.0));
        assert_eq!(b[4], (0.0, 1.0));
        let b = bins(&pairs, None, -10.0, 30);
        assert!(b[20].0 > 0.99 && b[4].1 > 0.97);
    }
}
