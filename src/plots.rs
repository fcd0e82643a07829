//! PNG plots for people reading a training run or an evaluation: learning curves and
//! confusion matrices.
//!
//! Drawn with `plotters` into memory, encoded as PNG with `image`, and written atomically.
//! Text uses the system's sans-serif font through fontconfig (DejaVu Sans from
//! fonts-dejavu-core on Debian).

use std::io::Cursor;
use std::path::Path;

use anyhow::{Context, Result, anyhow, ensure};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::train::curves::EpochStats;

/// Width and height of [`curves_png`]'s image in pixels.
pub const CURVES_SIZE: (u32, u32) = (1000, 420);
/// Colour of training curves.
pub const TRAIN_COLOUR: RGBColor = RGBColor(31, 119, 180);
/// Colour of validation curves.
pub const VAL_COLOUR: RGBColor = RGBColor(214, 39, 40);
/// Colour of a confusion cell holding a whole row; empty cells are white.
pub const CELL_COLOUR: RGBColor = RGBColor(8, 69, 148);

/// Side of one confusion cell in pixels.
const CELL: u32 = 48;
/// Room left of the matrix for the true labels.
const LEFT: u32 = 110;
/// Room above the matrix for the title and the predicted labels.
const TOP: u32 = 80;
/// Room right of and below the matrix.
const PAD: u32 = 20;
const FONT: &str = "sans-serif";

fn plot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("cannot draw the plot: {e}")
}

/// Draws into a white `size` RGB canvas with `draw`, then writes it to `path` as PNG.
fn render(
    size: (u32, u32),
    path: &Path,
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<()>,
) -> Result<()> {
    let (w, h) = size;
    let mut pixels = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        draw(&root).with_context(|| format!("cannot draw {}", path.display()))?;
        root.present().map_err(plot_error)?;
    }
    let img = image::RgbImage::from_raw(w, h, pixels).context("plot buffer has the wrong size")?;
    let mut png = Vec::new();
    img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .with_context(|| format!("cannot encode {} as PNG", path.display()))?;
    crate::fsutil::write_atomic(path, &png)
}

/// Plots loss (left) and accuracy (right) of training and validation per epoch, every stage
/// one after the other on a run-wide epoch axis, with a vertical line where a stage begins.
/// Writes a [`CURVES_SIZE`] PNG to `path`, atomically. `rows` must not be empty.
pub fn curves_png(rows: &[EpochStats], path: &Path) -> Result<()> {
    ensure!(!rows.is_empty(), "no epochs to plot into {}", path.display());
    let n = rows.len() as f64;
    let x_range = 0.5..n + 0.5;
    let max_loss = rows
        .iter()
        .flat_map(|r| [r.train_loss, r.val_loss])
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let loss_top = if max_loss > 0.0 { max_loss * 1.1 } else { 1.0 };
    let starts: Vec<(f64, u8)> = rows
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0].stage != w[1].stage)
        .map(|(i, w)| (i as f64 + 1.5, w[1].stage))
        .collect();
    type Pick = fn(&EpochStats) -> f64;
    let panels: [(&str, f64, Pick, Pick); 2] = [
        ("loss", loss_top, |r| r.train_loss, |r| r.val_loss),
        ("accuracy", 1.0, |r| r.train_acc, |r| r.val_acc),
    ];
    render(CURVES_SIZE, path, |root| {
        for (area, (name, top, train, val)) in root.split_evenly((1, 2)).iter().zip(panels) {
            let mut chart = ChartBuilder::on(area)
                .caption(name, (FONT, 20))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(52)
                .build_cartesian_2d(x_range.clone(), 0.0..top)
                .map_err(plot_error)?;
            chart
                .configure_mesh()
                .x_desc("epoch (all stages)")
                .y_desc(name)
                // Epochs are whole: label only the ticks that fall on one.
                .x_label_formatter(&|x| {
                    if (x - x.round()).abs() < 1e-6 { format!("{x:.0}") } else { String::new() }
                })
                .draw()
                .map_err(plot_error)?;
            for (x, stage) in &starts {
                chart
                    .draw_series(LineSeries::new([(*x, 0.0), (*x, top)], BLACK.mix(0.4)))
                    .map_err(plot_error)?
                    .label(format!("stage {stage} starts"))
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.4)));
            }
            for (label, pick, colour) in [("train", train, TRAIN_COLOUR), ("val", val, VAL_COLOUR)]
            {
                let points: Vec<(f64, f64)> =
                    rows.iter().enumerate().map(|(i, r)| (i as f64 + 1.0, pick(r))).collect();
                chart
                    .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
                    .map_err(plot_error)?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2))
                    });
                chart
                    .draw_series(points.into_iter().map(|p| Circle::new(p, 3, colour.filled())))
                    .map_err(plot_error)?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(plot_error)?;
        }
        Ok(())
    })
}

/// Width and height of [`roc_png`]'s image in pixels.
pub const ROC_SIZE: (u32, u32) = (560, 520);
/// Colours of successive ROC curves.
const SERIES: [RGBColor; 4] =
    [TRAIN_COLOUR, VAL_COLOUR, RGBColor(44, 160, 44), RGBColor(148, 103, 189)];

/// Plots ROC curves (false positive rate across, true positive rate up), one per
/// `(legend, points)`, with the chance diagonal. Writes a [`ROC_SIZE`] PNG to `path`.
pub fn roc_png(curves: &[(String, Vec<(f64, f64)>)], title: &str, path: &Path) -> Result<()> {
    ensure!(!curves.is_empty(), "no ROC curves to plot into {}", path.display());
    render(ROC_SIZE, path, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 20))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("false positive rate (in-domain flagged)")
            .y_desc("true positive rate (shifted flagged)")
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3)))
            .map_err(plot_error)?
            .label("chance")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.3)));
        for ((label, points), colour) in curves.iter().zip(SERIES.iter().cycle()) {
            let colour = *colour;
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
                .map_err(plot_error)?
                .label(label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(plot_error)?;
        Ok(())
    })
}

/// Width and height of [`confusion_png`]'s image for `n` labels.
pub fn confusion_size(n: usize) -> (u32, u32) {
    let side = CELL * n as u32;
    (LEFT + side + PAD, TOP + side + PAD + 24)
}

/// Top-left pixel of the cell of true label `row`, predicted label `col`.
fn cell_origin(row: usize, col: usize) -> (i32, i32) {
    ((LEFT + CELL * col as u32) as i32, (TOP + CELL * row as u32) as i32)
}

/// Colour of a cell holding `fraction` (0..1) of its row.
fn cell_colour(fraction: f64) -> RGBColor {
    let mix = |c: u8| (255.0 - (255.0 - f64::from(c)) * fraction.clamp(0.0, 1.0)).round() as u8;
    RGBColor(mix(CELL_COLOUR.0), mix(CELL_COLOUR.1), mix(CELL_COLOUR.2))
}

/// Draws a confusion matrix (`matrix[true][predicted]`, square, one row per label) as a grid
/// of cells shaded by the fraction of their row (so rare classes read as clearly as common
/// ones) and labelled with their counts, true labels down the left, predicted labels along the
/// top, `title` above. Writes a [`confusion_size`] PNG to `path`, atomically.
pub fn confusion_png(
    matrix: &[Vec<usize>],
    labels: &[String],
    title: &str,
    path: &Path,
) -> Result<()> {
    let n = labels.len();
    ensure!(n > 0, "no labels to plot into {}", path.display());
    ensure!(
        matrix.len() == n && matrix.iter().all(|r| r.len() == n),
        "confusion matrix for {} is not {n}x{n}",
        path.display()
    );
    let size = confusion_size(n);
    let centred =
        |px: u32| TextStyle::from((FONT, px).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
    render(size, path, |root| {
        let draw_text = |text: String, at: (i32, i32), style: &TextStyle| {
            root.draw(&Text::new(text, at, style.clone())).map_err(plot_error)
        };
        let half = CELL as i32 / 2;
        let side = (CELL * n as u32) as i32;
        draw_text(title.to_owned(), (LEFT as i32 + side / 2, 18), &centred(18))?;
        draw_text("predicted".into(), (LEFT as i32 + side / 2, 42), &centred(14))?;
        draw_text("true".into(), (LEFT as i32 / 2, TOP as i32 - 14), &centred(14))?;
        for (i, row) in matrix.iter().enumerate() {
            let total: usize = row.iter().sum();
            let (_, y) = cell_origin(i, 0);
            draw_text(labels[i].clone(), (LEFT as i32 / 2, y + half), &centred(14))?;
            let (x, _) = cell_origin(0, i);
            draw_text(labels[i].clone(), (x + half, TOP as i32 - 14), &centred(14))?;
            for (j, &count) in row.iter().enumerate() {
                let fraction = if total == 0 { 0.0 } else { count as f64 / total as f64 };
                let (x, y) = cell_origin(i, j);
                let cell = [(x, y), (x + CELL as i32, y + CELL as i32)];
                root.draw(&Rectangle::new(cell, cell_colour(fraction).filled()))
                    .map_err(plot_error)?;
                root.draw(&Rectangle::new(cell, BLACK.mix(0.25))).map_err(plot_error)?;
                let ink = if fraction > 0.5 { WHITE } else { BLACK };
                let style = centred(15).color(&ink);
                draw_text(count.to_string(), (x + half, y + half), &style)?;
            }
        }
        let total: usize = matrix.iter().flatten().sum();
        let correct: usize = (0..n).map(|i| matrix[i][i]).sum();
        let note = format!("{correct} of {total} correct");
        draw_text(note, (LEFT as i32 + side / 2, TOP as i32 + side + 14), &centred(13))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixel(img: &image::RgbImage, (x, y): (i32, i32)) -> [u8; 3] {
        img.get_pixel(x as u32, y as u32).0
    }

    #[test]
    fn confusion_cells_are_shaded_by_their_row_fraction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.png");
        let labels = vec!["1c".to_string(), "2e".to_string()];
        confusion_png(&[vec![3, 0], vec![1, 1]], &labels, "validation", &path).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), confusion_size(2));
        let corner = |r, c| {
            let (x, y) = cell_origin(r, c);
            pixel(&img, (x + 3, y + 3))
        };
        assert_eq!(corner(0, 0), [CELL_COLOUR.0, CELL_COLOUR.1, CELL_COLOUR.2]);
        assert_eq!(corner(0, 1), [255, 255, 255]);
        let half = cell_colour(0.5);
        assert_eq!(corner(1, 0), [half.0, half.1, half.2]);
        assert_eq!(corner(1, 1), corner(1, 0));
        // The labels and counts put dark text on the white cell and beside the grid.
        let (x, y) = cell_origin(0, 1);
        let inked = (x..x + CELL as i32)
            .flat_map(|px| (y..y + CELL as i32).map(move |py| (px, py)))
            .filter(|&p| pixel(&img, p)[0] < 128)
            .count();
        assert!(inked > 5, "the count 0 is not drawn ({inked} dark pixels)");
        assert!(confusion_png(&[vec![1]], &labels, "bad", &path).is_err());
    }

    #[test]
    fn curves_draw_both_series_over_two_stages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let row = |stage, epoch, loss: f64, acc: f64| EpochStats {
            stage,
            epoch,
            train_loss: loss,
            train_acc: acc,
            val_loss: loss + 0.2,
            val_acc: acc - 0.1,
            seconds: 0.0,
        };
        let rows = [row(1, 1, 2.0, 0.3), row(1, 2, 1.5, 0.5), row(2, 1, 1.0, 0.7)];
        curves_png(&rows, &path).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), CURVES_SIZE);
        let count = |c: RGBColor| img.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count();
        assert!(count(TRAIN_COLOUR) > 200, "{} training pixels", count(TRAIN_COLOUR));
        assert!(count(VAL_COLOUR) > 200, "{} validation pixels", count(VAL_COLOUR));
        assert!(curves_png(&[], &path).is_err());
    }
}
