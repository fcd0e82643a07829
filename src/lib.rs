//! coin_sorter: a ROS 2 node that finds coins in camera images and sorts them.
//!
//! The modules follow the data flow: image in → [`decode`] → [`locate`] → [`classify`] →
//! [`monitor`] (is the coin like the training data?) → [`track`] (the same coin across
//! frames) → [`decide`] (bin) → publish ([`transport`]); [`pipeline`] chains the steps without
//! any transport, [`nodes`] wires it to ROS 2. Around it: [`dataset`] cuts training crops,
//! [`train`] makes the model, [`score`] and [`eval`] measure it, [`audit`] tries to prove its
//! test score wrong, [`plots`] draws curves and confusion matrices, [`params`] reads ROS 2
//! parameters and [`msgs`] defines every message.

pub mod annotate;
pub mod audit;
pub mod bag;
pub mod bench;
pub mod classify;
pub mod dataset;
pub mod decide;
pub mod decode;
pub mod demo;
pub mod eval;
pub mod frame_view;
pub mod fsutil;
pub mod locate;
pub mod monitor;
pub mod msgs;
pub mod nodes;
pub mod panics;
pub mod params;
pub mod pipeline;
pub mod plots;
pub mod progress;
pub mod score;
pub mod track;
pub mod train;
pub mod transport;
