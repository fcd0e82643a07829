//! The sorter's parameters as ROS 2 parameters: declared from its table with the values it
//! started with, served to `ros2 param list/get/set`, checked, and applied live when that is
//! safe.
//!
//! A parameter marked `dynamic` in the table (thresholds, bins, coin finder, shift monitor
//! window, tracking settings) is checked as the node checks its start-up values and then sent
//! to the classification thread, which applies it before the next frame. Any other parameter
//! (topics, QoS, model path, device) is refused with the reason: it needs a restart.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use ros2_client::NodeOptions;
use ros2_client::parameters::ParameterValue as Ros;

use crate::params::{ParamSet, ParamSpec, ParamValue};

/// Converts a value of ours to its ROS 2 parameter value.
pub fn to_ros(v: &ParamValue) -> Ros {
    match v {
        ParamValue::Bool(b) => Ros::Boolean(*b),
        ParamValue::Integer(i) => Ros::Integer(*i),
        ParamValue::Double(d) => Ros::Double(*d),
        ParamValue::String(s) => Ros::String(s.clone()),
        ParamValue::StringArray(a) => Ros::StringArray(a.clone()),
    }
}

/// Converts a ROS 2 parameter value to ours; other ROS 2 types are refused.
pub fn from_ros(v: &Ros) -> Result<ParamValue, String> {
    Ok(match v {
        Ros::Boolean(b) => ParamValue::Bool(*b),
        Ros::Integer(i) => ParamValue::Integer(*i),
        Ros::Double(d) => ParamValue::Double(*d),
        Ros::String(s) => ParamValue::String(s.clone()),
        Ros::StringArray(a) => ParamValue::StringArray(a.clone()),
        other => return Err(format!("this node has no parameter of type {other:?}")),
    })
}

/// A whole-set parameter check: the node's start-up check.
type Check = dyn Fn(&ParamSet) -> anyhow::Result<()> + Send + Sync;

/// The node's parameters while it runs: the values in force, which changes are allowed, and
/// where accepted changes go. Shared by both backends' parameter services.
pub struct LiveParams {
    current: Mutex<ParamSet>,
    specs: &'static [ParamSpec],
    check: Box<Check>,
    changes: Sender<ParamSet>,
}

impl LiveParams {
    /// Parameters starting at `params`. `check` validates a whole parameter set (the node's
    /// start-up check); each accepted change is sent on `changes` as the full new set.
    pub fn new(
        params: &ParamSet,
        specs: &'static [ParamSpec],
        check: impl Fn(&ParamSet) -> anyhow::Result<()> + Send + Sync + 'static,
        changes: Sender<ParamSet>,
    ) -> Self {
        Self { current: Mutex::new(params.clone()), specs, check: Box::new(check), changes }
    }

    /// The values in force.
    pub fn current(&self) -> ParamSet {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The set that setting `name` to `value` would give, or why it is refused. `None`: the
    /// value is the one in force (both backends pass start-up values through here).
    pub fn candidate(&self, name: &str, value: ParamValue) -> Result<Option<ParamSet>, String> {
        let mut next = self.current();
        if next.get(name) == Some(&value) {
            return Ok(None);
        }
        let spec = self
            .specs
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| format!("this node has no parameter {name}"))?;
        if !spec.dynamic {
            return Err(format!(
                "{name} cannot change while the node runs; restart it with -p {name}:=VALUE"
            ));
        }
        next.set_value(name, value).map_err(|e| format!("{e:#}"))?;
        (self.check)(&next).map_err(|e| format!("{e:#}"))?;
        Ok(Some(next))
    }

    /// Sets `name` to `value` if [`Self::candidate`] allows it; the classification thread
    /// applies it before its next frame.
    pub fn set(&self, name: &str, value: ParamValue) -> Result<(), String> {
        let shown = value.to_string();
        let Some(next) = self.candidate(name, value)? else { return Ok(()) };
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        self.changes
            .send(next.clone())
            .map_err(|_| "the classification thread has stopped".to_string())?;
        *cur = next;
        tracing::info!("parameter {name} set to {shown}; applies from the next frame");
        Ok(())
    }
}

/// ros2-client node options declaring every parameter of `live` and serving them.
pub fn node_options(live: Arc<LiveParams>) -> NodeOptions {
    let mut options = NodeOptions::new().start_parameter_services(true);
    for (name, value) in live.current().iter() {
        options = options.declare_parameter(name, to_ros(value));
    }
    let validate = live.clone();
    options
        .parameter_validator(Box::new(move |name, value| {
            validate.candidate(name, from_ros(value)?).map(|_| ())
        }))
        .parameter_set_action(Box::new(move |name, value| live.set(name, from_ros(value)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_foreign_types_are_refused() {
        for v in [
            ParamValue::Bool(true),
            ParamValue::Integer(-3),
            ParamValue::Double(0.25),
            ParamValue::String("x".into()),
            ParamValue::StringArray(vec!["a:b".into()]),
        ] {
            assert_eq!(from_ros(&to_ros(&v)).unwrap(), v);
        }
        assert!(from_ros(&Ros::ByteArray(vec![1])).is_err());
    }
}
