//! The rcl side of the transport (cargo feature `r2r`): conversions between r2r's generated
//! message types and ours, QoS profiles and parameter values in r2r's terms, and logging
//! through rcutils (console, log file and `/rosout`, as for every rcl node).

pub mod convert;
pub mod log;
