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

/// Node options declaring every parameter of `params` and serving them. `check` validates a
/// whole parameter set (the node's start-up check); each accepted change is sent on
/// `changes` as the full new set.
pub fn node_options(
    params: &ParamSet,
    specs: &'static [ParamSpec],
    check: impl Fn(&ParamSet) -> anyhow::Result<()> + Send + Sync + 'static,
    changes: Sender<ParamSet>,
) -> NodeOptions {
    let current = Arc::new(Mutex::new(params.clone()));
    let mut options = NodeOptions::new().start_parameter_services(true);
    for (name, value) in params.iter() {
        options = options.declare_parameter(name, to_ros(value));
    }
    let candidate = {
        let current = current.clone();
        // `None`: the value is the one in force (ros2-client passes every declared value
        // through the validator and the set action when the node starts).
        move |name: &str, value: &Ros| -> Result<Option<ParamSet>, String> {
            let ours = from_ros(value)?;
            let mut next = current.lock().map_err(|_| "parameter store poisoned")?.clone();
            if next.get(name) == Some(&ours) {
                return Ok(None);
            }
            let spec = specs
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| format!("this node has no parameter {name}"))?;
            if !spec.dynamic {
                return Err(format!(
                    "{name} cannot change while the node runs; restart it with -p {name}:=VALUE"
                ));
            }
            next.set_value(name, ours).map_err(|e| format!("{e:#}"))?;
            check(&next).map_err(|e| format!("{e:#}"))?;
            Ok(Some(next))
        }
    };
    let candidate = Arc::new(candidate);
    let validate = candidate.clone();
    options
        .parameter_validator(Box::new(move |name, value| validate(name, value).map(|_| ())))
        .parameter_set_action(Box::new(move |name, value| {
            let Some(next) = candidate(name, value)? else { return Ok(()) };
            let mut cur = current.lock().map_err(|_| "parameter store poisoned")?;
            changes
                .send(next.clone())
                .map_err(|_| "the classification thread has stopped".to_string())?;
            *cur = next;
            tracing::info!("parameter {name} set to {value:?}; applies from the next frame");
            Ok(())
        }))
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
