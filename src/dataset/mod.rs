//! Dataset: making class-per-folder coin crops for training and testing.
//!
//! [`crops`] cuts them from annotated photos ([`labelme`]) or from a recorded bag with its
//! ground truth; [`capture`] cuts them from a live camera topic with the node's own pipeline,
//! labelled with the model's guess for an operator to correct; [`split`] divides a set into
//! train and test folders. Every crop is written by
//! [`writer`] as `OUT/<label>/<source>_<k>.jpg`, so the training split can group crops by
//! source photo ([`crate::train::dataset::group_id`]).

pub mod capture;
pub mod crops;
pub mod labelme;
pub mod split;
pub mod writer;

use anyhow::{Result, bail};

use crate::locate::Circle;

/// A coin circle with its class label.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledCircle {
    /// Class name; also the folder the crop goes to.
    pub label: String,
    /// Centre and radius in pixels of the source image.
    pub circle: Circle,
}

/// The `coin_sorter dataset` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DatasetCommand {
    /// Cut labelled coin crops from LabelMe-annotated photos or a bag with ground truth.
    Crops(crops::CropsArgs),
    /// Save the coins a model finds on a live image topic, sorted by its guess.
    Capture(capture::CaptureArgs),
    /// Split a crop set into train and test folders, by source photo (or by crop, to plant a
    /// leak for an audit).
    Split(split::SplitArgs),
}

/// Runs a `dataset` subcommand.
pub fn run(cmd: &DatasetCommand) -> Result<()> {
    match cmd {
        DatasetCommand::Crops(args) => crops::run(args).map(|_| ()),
        DatasetCommand::Capture(args) => capture::run(args).map(|_| ()),
        DatasetCommand::Split(args) => split::run(args).map(|_| ()),
    }
}

/// Fails unless `label` can be a folder name of its own: not empty, not `.` or `..`, no path
/// separator or NUL.
pub fn check_label(label: &str) -> Result<()> {
    if label.is_empty() || label == "." || label == ".." || label.contains(['/', '\\', '\0']) {
        bail!("label {label:?} cannot be a class folder name");
    }
    Ok(())
}

/// Fails unless `source` can start a file name and survives the group-id round trip (see
/// [`crate::train::dataset::group_id`]): not empty, no path separator, NUL or leading dot.
pub fn check_source(source: &str) -> Result<()> {
    if source.is_empty() || source.starts_with('.') || source.contains(['/', '\\', '\0']) {
        bail!("source name {source:?} cannot start a crop file name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_escape_the_output_folder_are_refused() {
        assert!(check_label("2e").is_ok());
        for bad in ["", ".", "..", "a/b", "a\\b"] {
            assert!(check_label(bad).is_err(), "{bad:?}");
        }
        assert!(check_source("scene_1a").is_ok());
        for bad in ["", ".hidden", "x/y"] {
            assert!(check_source(bad).is_err(), "{bad:?}");
        }
    }
}
