//! Train: makes the coin classifier from a class-per-folder image set, in one or two stages.
//!
//! [`dataset`] loads and caches the images, [`split`] holds out whole source photos for
//! validation, [`augment`] varies the training crops, [`sampler`] orders and balances them,
//! [`resnet`] is the network, [`weights`] reads and writes its variables and moves them between
//! networks, [`start`] builds the network a run starts from, [`optim`] updates it, [`fit`] is
//! the training loop, [`checkpoint`] lets a run resume, [`curves`] is its per-epoch record,
//! [`report`] its Markdown summary, [`export`] writes TorchScript plus metadata, and [`run`]
//! wires them into the `train` command.

pub mod augment;
pub mod checkpoint;
pub mod curves;
pub mod dataset;
pub mod export;
pub mod fit;
pub mod optim;
pub mod report;
pub mod resnet;
pub mod run;
pub mod sampler;
pub mod split;
pub mod start;
pub mod weights;

pub use run::{TrainArgs, TrainReport, run, run_on};
