//! Classify: coin crops in, labels and confidences out.

pub mod metadata;
pub mod preprocess;
