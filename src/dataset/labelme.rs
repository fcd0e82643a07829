//! Reading LabelMe annotations: which photo, and which labelled coin circles in it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::LabelledCircle;
use crate::locate::Circle;

#[derive(Debug, Deserialize)]
struct RawShape {
    label: String,
    points: Vec<[f64; 2]>,
    #[serde(default = "polygon")]
    shape_type: String,
}

fn polygon() -> String {
    "polygon".into()
}

#[derive(Debug, Deserialize)]
struct RawAnnotation {
    #[serde(rename = "imagePath")]
    image_path: String,
    #[serde(rename = "imageWidth")]
    image_width: Option<u32>,
    #[serde(rename = "imageHeight")]
    image_height: Option<u32>,
    shapes: Vec<RawShape>,
}

/// One annotated photo.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// The annotation file.
    pub json: PathBuf,
    /// The photo it describes (its `imagePath`, resolved against the annotation's folder).
    pub image: PathBuf,
    /// Size of the photo the coordinates refer to, when the file states it.
    pub size: Option<(u32, u32)>,
    /// The labelled coins, in the file's shape order.
    pub coins: Vec<LabelledCircle>,
}

/// The circle a polygon outlines: centroid of its vertices, mean vertex distance from it.
pub fn polygon_circle(points: &[[f64; 2]]) -> Option<Circle> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let cx = points.iter().map(|p| p[0]).sum::<f64>() / n;
    let cy = points.iter().map(|p| p[1]).sum::<f64>() / n;
    let r = points.iter().map(|p| (p[0] - cx).hypot(p[1] - cy)).sum::<f64>() / n;
    (r > 0.0 && r.is_finite()).then_some(Circle { x: cx as f32, y: cy as f32, r: r as f32 })
}

/// Reads one LabelMe file. Polygons become their [`polygon_circle`]; LabelMe `circle` shapes
/// (centre, then a rim point) are taken as they are; other shape types are skipped with a
/// warning. Errors name the file and the shape.
pub fn read(json: &Path) -> Result<Annotation> {
    let text = std::fs::read_to_string(json)
        .with_context(|| format!("cannot read annotation {}", json.display()))?;
    let raw: RawAnnotation = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a LabelMe annotation", json.display()))?;
    let dir = json.parent().unwrap_or(Path::new("."));
    let mut coins = Vec::with_capacity(raw.shapes.len());
    for (i, s) in raw.shapes.iter().enumerate() {
        let circle = match s.shape_type.as_str() {
            "polygon" => polygon_circle(&s.points),
            "circle" if s.points.len() == 2 => {
                let [c, rim] = [s.points[0], s.points[1]];
                let r = (rim[0] - c[0]).hypot(rim[1] - c[1]);
                (r > 0.0).then_some(Circle { x: c[0] as f32, y: c[1] as f32, r: r as f32 })
            }
            other => {
                tracing::warn!(
                    "{}: shape {i} ({:?}) is a {other:?}, not a polygon or circle; skipped",
                    json.display(),
                    s.label
                );
                continue;
            }
        };
        let Some(circle) = circle else {
            bail!(
                "{}: shape {i} ({:?}) with {} points outlines no circle",
                json.display(),
                s.label,
                s.points.len()
            );
        };
        super::check_label(&s.label).with_context(|| format!("{}: shape {i}", json.display()))?;
        coins.push(LabelledCircle { label: s.label.clone(), circle });
    }
    Ok(Annotation {
        json: json.to_path_buf(),
        image: dir.join(&raw.image_path),
        size: raw.image_width.zip(raw.image_height),
        coins,
    })
}

/// The annotation files of a LabelMe folder: `DIR/annotations/*.json`, or `DIR/*.json` when
/// there is no `annotations` folder; sorted by name.
pub fn annotation_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let sub = dir.join("annotations");
    let folder = if sub.is_dir() { sub } else { dir.to_path_buf() };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&folder)
        .with_context(|| format!("cannot list LabelMe folder {}", folder.display()))?
    {
        let path = entry.with_context(|| format!("cannot list {}", folder.display()))?.path();
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) {
            files.push(path);
        }
    }
    if files.is_empty() {
        bail!("{} holds no LabelMe .json annotations", folder.display());
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polygon_of_a_square_gives_its_centre_and_mean_corner_distance() {
        let c = polygon_circle(&[[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]]).unwrap();
        assert_eq!((c.x, c.y), (1.0, 1.0));
        assert!((c.r - 2f32.sqrt()).abs() < 1e-6);
        assert!(polygon_circle(&[[0.0, 0.0], [1.0, 1.0]]).is_none());
    }

    #[test]
    fn reads_polygons_and_circles_and_resolves_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("a.json");
        let text = r#"{"imagePath": "../img/a.jpg", "imageWidth": 40, "imageHeight": 30,
            "shapes": [
              {"label": "1e", "points": [[0,0],[4,0],[4,4],[0,4]], "shape_type": "polygon"},
              {"label": "2c", "points": [[10,10],[13,14]], "shape_type": "circle"},
              {"label": "x", "points": [[1,1],[2,2]], "shape_type": "line"}]}"#;
        std::fs::write(&json, text).unwrap();
        let a = read(&json).unwrap();
        assert_eq!(a.image, dir.path().join("../img/a.jpg"));
        assert_eq!(a.size, Some((40, 30)));
        let got: Vec<(&str, f32, f32, f32)> = a
            .coins
            .iter()
            .map(|c| (c.label.as_str(), c.circle.x, c.circle.y, c.circle.r))
            .collect();
        assert_eq!(got, [("1e", 2.0, 2.0, 8f32.sqrt()), ("2c", 10.0, 10.0, 5.0)]);
    }

    #[test]
    fn a_label_that_is_no_folder_name_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("b.json");
        let text = r#"{"imagePath": "b.jpg", "shapes": [
            {"label": "../x", "points": [[0,0],[4,0],[4,4]]}]}"#;
        std::fs::write(&json, text).unwrap();
        let err = format!("{:#}", read(&json).unwrap_err());
        assert!(err.contains("b.json") && err.contains("../x"), "{err}");
    }
}
