//! ROS 2 `.msg` definitions of the types this package writes into bags, and the `ros2msg`
//! schema text (a definition followed by those of its dependencies) that MCAP readers such as
//! Foxglove and `mcap-ros2-support` decode CDR with. Our own types come from `msg/*.msg`, the
//! one source of truth; the standard ones are the upstream ROS 2 definitions without comments.

use anyhow::{Result, bail};

const TIME: &str = "int32 sec\nuint32 nanosec\n";
const HEADER: &str = "builtin_interfaces/Time stamp\nstring frame_id\n";
const IMAGE: &str = "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\n\
                     uint8 is_bigendian\nuint32 step\nuint8[] data\n";
const COMPRESSED_IMAGE: &str = "std_msgs/Header header\nstring format\nuint8[] data\n";

/// The `.msg` text of `pkg/Name` (or `pkg/msg/Name`), if this package knows it.
pub fn definition(ros_type: &str) -> Option<&'static str> {
    Some(match ros_type.replace("/msg/", "/").as_str() {
        "builtin_interfaces/Time" => TIME,
        "std_msgs/Header" => HEADER,
        "sensor_msgs/Image" => IMAGE,
        "sensor_msgs/CompressedImage" => COMPRESSED_IMAGE,
        "coin_sorter/CoinDetection" => include_str!("../../msg/CoinDetection.msg"),
        "coin_sorter/CoinDetectionArray" => include_str!("../../msg/CoinDetectionArray.msg"),
        "coin_sorter/SortCommand" => include_str!("../../msg/SortCommand.msg"),
        "coin_sorter/ActuatorState" => include_str!("../../msg/ActuatorState.msg"),
        _ => return None,
    })
}

const PRIMITIVES: [&str; 15] = [
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
    "uint32", "int64", "uint64", "string", "wstring",
];

/// The message types `text` (of package `package`) has fields of, as `pkg/Name`, in field
/// order.
fn field_types(text: &str, package: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(ty) = line.split_whitespace().next() else { continue };
        if line.contains('=') && !line.contains("<=") && line.split_whitespace().count() >= 2 {
            // A constant (`uint8 FOO=1`) has a primitive type; nothing to resolve.
            continue;
        }
        let base = ty.split(['[', '<']).next().unwrap_or(ty);
        if PRIMITIVES.contains(&base) {
            continue;
        }
        out.push(if base.contains('/') { base.to_owned() } else { format!("{package}/{base}") });
    }
    out
}

/// The `ros2msg` schema of `ros_type` (`pkg/msg/Name`): its definition, then each dependency
/// once, depth first, as `MSG: pkg/Name` sections separated by a line of 80 `=`, the layout
/// rosbag2 writes. Fails naming the first type without a definition here.
pub fn ros2msg_schema(ros_type: &str) -> Result<String> {
    let Some(top) = definition(ros_type) else {
        bail!("no message definition for {ros_type}");
    };
    let package = ros_type.split('/').next().unwrap_or("");
    let mut text = top.to_owned();
    let mut done: Vec<String> = Vec::new();
    let mut stack: Vec<String> = field_types(top, package).into_iter().rev().collect();
    while let Some(dep) = stack.pop() {
        if done.contains(&dep) {
            continue;
        }
        let Some(def) = definition(&dep) else {
            bail!("no message definition for {dep}, a field type of {ros_type}");
        };
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&"=".repeat(80));
        text.push_str(&format!("\nMSG: {dep}\n{def}"));
        let dep_package = dep.split('/').next().unwrap_or("").to_owned();
        stack.extend(field_types(def, &dep_package).into_iter().rev());
        done.push(dep);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_lists_every_dependency_once_depth_first() {
        let s = ros2msg_schema("coin_sorter/msg/CoinDetectionArray").unwrap();
        let sections: Vec<&str> = s.lines().filter_map(|l| l.strip_prefix("MSG: ")).collect();
        assert_eq!(
            sections,
            ["std_msgs/Header", "builtin_interfaces/Time", "coin_sorter/CoinDetection"]
        );
        assert!(s.starts_with(include_str!("../../msg/CoinDetectionArray.msg")));
        let image = ros2msg_schema("sensor_msgs/msg/Image").unwrap();
        assert_eq!(image.matches("MSG: ").count(), 2);
        assert!(ros2msg_schema("geometry_msgs/msg/Point").is_err());
    }
}
