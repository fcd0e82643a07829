//! Train: makes the coin classifier from a class-per-folder image set.
//!
//! [`dataset`] loads and caches the images, [`split`] holds out whole source photos for
//! validation, [`augment`] varies the training crops, [`resnet`] is the network, [`fit`] the
//! training loop, [`curves`] its per-epoch record, [`export`] writes TorchScript plus
//! metadata, and [`run`] wires them into the `train` command.

pub mod augment;
pub mod curves;
pub mod dataset;
pub mod export;
pub mod fit;
pub mod resnet;
pub mod run;
pub mod split;

pub use run::{TrainArgs, TrainReport, run, run_on};
