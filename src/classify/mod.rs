//! Classify: coin crops in, labels and confidences out.

pub mod area;
pub mod crop;
pub mod cuda_stream;
pub mod device;
pub mod metadata;
pub mod model;
pub mod preprocess;
pub mod script;
