//! Our messages, QoS and parameter values in r2r's terms, and back. Pure data conversions,
//! unit-tested without a ROS installation (r2r's `doc-only` bindings).
//!
//! Outgoing messages of types r2r has no generated code for here (this package's own, and
//! `vision_msgs`) are sent through r2r's untyped publishers as CDR bytes ([`cdr`]): the bytes
//! the default backend sends, which exist for any message and carry NaN scores exactly.

use anyhow::Result;
use r2r::builtin_interfaces::msg::Time as RclTime;
use r2r::sensor_msgs::msg as rcl_sensor;
use r2r::std_msgs::msg::Header as RclHeader;
use r2r::{ParameterValue, QosProfile};
use serde::Serialize;

use crate::msgs::sensor_msgs::{CompressedImage, Image};
use crate::msgs::std_msgs::{Header, Time};
use crate::params::ParamValue;
use crate::transport::qos::{ImageQos, OUTPUT_DEPTH};

/// An rcl message header as ours.
pub fn header_from(h: RclHeader) -> Header {
    Header { stamp: Time { sec: h.stamp.sec, nanosec: h.stamp.nanosec }, frame_id: h.frame_id }
}

/// Our header as rcl's.
pub fn header_to(h: Header) -> RclHeader {
    RclHeader {
        stamp: RclTime { sec: h.stamp.sec, nanosec: h.stamp.nanosec },
        frame_id: h.frame_id,
    }
}

/// A received `sensor_msgs/Image` as the pipeline's; the pixel buffer is moved, not copied.
pub fn image_from(m: rcl_sensor::Image) -> Image {
    Image {
        header: header_from(m.header),
        height: m.height,
        width: m.width,
        encoding: m.encoding,
        is_bigendian: m.is_bigendian,
        step: m.step,
        data: m.data,
    }
}

/// The pipeline's image (the debug image) as r2r's `sensor_msgs/Image`.
pub fn image_to(m: Image) -> rcl_sensor::Image {
    rcl_sensor::Image {
        header: header_to(m.header),
        height: m.height,
        width: m.width,
        encoding: m.encoding,
        is_bigendian: m.is_bigendian,
        step: m.step,
        data: m.data,
    }
}

/// A received `sensor_msgs/CompressedImage` as the pipeline's.
pub fn compressed_from(m: rcl_sensor::CompressedImage) -> CompressedImage {
    CompressedImage { header: header_from(m.header), format: m.format, data: m.data }
}

/// The camera subscription's profile: keep-last `depth`, best-effort unless asked otherwise.
pub fn image_qos(q: ImageQos) -> QosProfile {
    let base = QosProfile::sensor_data().keep_last(q.depth);
    match q.reliable {
        true => base.reliable(),
        false => base.best_effort(),
    }
}

/// Detections, sort commands and diagnostics: reliable, volatile, keep-last
/// [`OUTPUT_DEPTH`], as on the default backend.
pub fn output_qos() -> QosProfile {
    QosProfile::default().reliable().volatile().keep_last(OUTPUT_DEPTH)
}

/// The debug image: best-effort, keep-last 1, so a slow viewer never holds the node back.
pub fn debug_image_qos() -> QosProfile {
    QosProfile::sensor_data().keep_last(1)
}

/// Our parameter value as r2r's.
pub fn param_to(v: &ParamValue) -> ParameterValue {
    match v {
        ParamValue::Bool(b) => ParameterValue::Bool(*b),
        ParamValue::Integer(i) => ParameterValue::Integer(*i),
        ParamValue::Double(d) => ParameterValue::Double(*d),
        ParamValue::String(s) => ParameterValue::String(s.clone()),
        ParamValue::StringArray(a) => ParameterValue::StringArray(a.clone()),
    }
}

/// An r2r parameter value as ours; types no parameter of this package has are refused.
pub fn param_from(v: &ParameterValue) -> Result<ParamValue, String> {
    Ok(match v {
        ParameterValue::Bool(b) => ParamValue::Bool(*b),
        ParameterValue::Integer(i) => ParamValue::Integer(*i),
        ParameterValue::Double(d) => ParamValue::Double(*d),
        ParameterValue::String(s) => ParamValue::String(s.clone()),
        ParameterValue::StringArray(a) => ParamValue::StringArray(a.clone()),
        other => return Err(format!("this node has no parameter of type {}", other.type_name())),
    })
}

/// A message as the serialized form rcl publishes (`publish_raw`): little-endian CDR with
/// its encapsulation header, field order and types as in `msg/*.msg`.
pub fn cdr<T: Serialize>(m: &T) -> Result<Vec<u8>> {
    crate::bag::cdr::encode_cdr(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bag::cdr::decode_cdr;
    use crate::msgs::coin_sorter::{CoinDetection, CoinDetectionArray, SortCommand};

    fn header() -> Header {
        Header { stamp: Time { sec: 1_700_000_123, nanosec: 456_789 }, frame_id: "cam".into() }
    }

    #[test]
    fn images_convert_both_ways_field_for_field() {
        let ours = Image {
            header: header(),
            height: 2,
            width: 3,
            encoding: "bgr8".into(),
            is_bigendian: 0,
            step: 9,
            data: (0..18).collect(),
        };
        let theirs = image_to(ours.clone());
        assert_eq!(theirs.header.stamp.sec, 1_700_000_123);
        assert_eq!(theirs.header.stamp.nanosec, 456_789);
        assert_eq!(theirs.header.frame_id, "cam");
        assert_eq!((theirs.height, theirs.width, theirs.step), (2, 3, 9));
        assert_eq!(theirs.encoding, "bgr8");
        assert_eq!(theirs.data, (0..18).collect::<Vec<u8>>());
        assert_eq!(image_from(theirs), ours);
    }

    #[test]
    fn a_received_compressed_image_keeps_its_bytes_and_format() {
        let theirs = rcl_sensor::CompressedImage {
            header: header_to(header()),
            format: "jpeg".into(),
            data: vec![0xff, 0xd8, 0xff, 0xd9],
        };
        assert_eq!(
            compressed_from(theirs),
            CompressedImage {
                header: header(),
                format: "jpeg".into(),
                data: vec![255, 216, 255, 217]
            }
        );
    }

    #[test]
    fn a_received_image_goes_through_the_pipeline_decoder() {
        // 2x1 rgb8 from rcl: red then blue, as the decoder reads it.
        let theirs = rcl_sensor::Image {
            header: header_to(header()),
            height: 1,
            width: 2,
            encoding: "rgb8".into(),
            is_bigendian: 0,
            step: 6,
            data: vec![255, 0, 0, 0, 0, 255],
        };
        let rgb = crate::decode::decode_image(&image_from(theirs)).unwrap();
        assert_eq!((rgb.width, rgb.height), (2, 1));
        assert_eq!(rgb.data, vec![255, 0, 0, 0, 0, 255]);
    }

    #[test]
    fn outgoing_messages_are_cdr_bytes_that_read_back_exactly() {
        let coin = CoinDetection {
            coin_id: 7,
            label: "2e".into(),
            confidence: 0.875,
            bin: "reject".into(),
            rejected: true,
            shift_score: f32::NAN,
            out_of_distribution: true,
            x: 10.5,
            y: 20.25,
            radius: 30.0,
        };
        let msg = CoinDetectionArray { header: header(), detections: vec![coin] };
        let bytes = cdr(&msg).unwrap();
        // Little-endian plain CDR encapsulation, as rmw expects of serialized messages.
        assert_eq!(&bytes[..4], &[0, 1, 0, 0]);
        let back: CoinDetectionArray = decode_cdr(&bytes).unwrap();
        assert_eq!(back.header, msg.header);
        let (a, b) = (&back.detections[0], &msg.detections[0]);
        assert_eq!((a.coin_id, &a.label, &a.bin), (7, &b.label, &b.bin));
        assert!(a.shift_score.is_nan() && a.out_of_distribution);
        let cmd = SortCommand::for_detection(&msg.header, &msg.detections[0]);
        assert_eq!(decode_cdr::<SortCommand>(&cdr(&cmd).unwrap()).unwrap(), cmd);
    }

    #[test]
    fn parameter_values_round_trip_and_foreign_types_are_refused() {
        for v in [
            ParamValue::Bool(true),
            ParamValue::Integer(-3),
            ParamValue::Double(0.25),
            ParamValue::String("x".into()),
            ParamValue::StringArray(vec!["a:b".into()]),
        ] {
            assert_eq!(param_from(&param_to(&v)).unwrap(), v);
        }
        let refused = param_from(&ParameterValue::ByteArray(vec![1])).unwrap_err();
        assert!(refused.contains("no parameter of type"), "{refused}");
    }

    // The bytes of the outgoing messages, read by an independent decoder: Cyclone DDS's
    // Python IDL types in tests/peers/ros_types.py, written from the `.msg` definitions.
    use crate::msgs::diagnostic_msgs::{DiagnosticArray, DiagnosticStatus, KeyValue};
    use crate::msgs::vision_msgs::Detection2DArray;

    const DECODE: &str = r#"
import json, math, sys
sys.path.insert(0, sys.argv[1])
import ros_types as t

def plain(v):
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    if isinstance(v, list):
        return [plain(x) for x in v]
    if hasattr(v, "__dataclass_fields__"):
        return {k: plain(getattr(v, k)) for k in v.__dataclass_fields__}
    return v

for kind, path in zip(sys.argv[2::2], sys.argv[3::2]):
    print(json.dumps(plain(getattr(t, kind).deserialize(open(path, "rb").read()))))
"#;

    fn stamped() -> Header {
        Header {
            stamp: Time { sec: 1_733_300_000, nanosec: 250_000_000 },
            frame_id: "camera".into(),
        }
    }

    fn coin(id: u32, label: &str, confidence: f32, shift: f32) -> CoinDetection {
        CoinDetection {
            coin_id: id,
            label: label.into(),
            confidence,
            bin: format!("bin_{label}"),
            rejected: false,
            shift_score: shift,
            out_of_distribution: shift.is_nan(),
            x: 120.5,
            y: 80.25,
            radius: 31.0,
        }
    }

    #[test]
    fn an_independent_decoder_reads_what_the_rcl_backend_publishes() {
        let root = env!("CARGO_MANIFEST_DIR");
        let detections = CoinDetectionArray {
            header: stamped(),
            detections: vec![coin(3, "2e", 0.75, 0.5), coin(4, "1c", 0.5, f32::NAN)],
        };
        let command = SortCommand::for_detection(&detections.header, &detections.detections[0]);
        let diagnostics = DiagnosticArray {
            header: stamped(),
            status: vec![DiagnosticStatus {
                level: DiagnosticStatus::WARN,
                name: "coin_sorter: domain shift".into(),
                message: "3 of the last 5 coins".into(),
                hardware_id: "/coin_sorter".into(),
                values: vec![KeyValue { key: "state".into(), value: "WARN".into() }],
            }],
        };
        let messages = [
            ("CoinDetectionArray", cdr(&detections).unwrap()),
            ("SortCommand", cdr(&command).unwrap()),
            ("Detection2DArray", cdr(&Detection2DArray::from(&detections)).unwrap()),
            ("DiagnosticArray", cdr(&diagnostics).unwrap()),
        ];
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["-c".to_string(), DECODE.into(), format!("{root}/tests/peers")];
        for (kind, bytes) in &messages {
            let path = dir.path().join(kind);
            std::fs::write(&path, bytes).unwrap();
            args.extend([kind.to_string(), path.display().to_string()]);
        }
        let out = std::process::Command::new(format!("{root}/.venv/bin/python"))
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);

        let stamp = serde_json::json!({"sec": 1_733_300_000, "nanosec": 250_000_000});
        let [dets, cmd, vision, diag] = &lines[..] else { unreachable!() };
        assert_eq!(dets["header"]["stamp"], stamp);
        assert_eq!(dets["header"]["frame_id"], "camera");
        let coins = dets["detections"].as_array().unwrap();
        assert_eq!(coins.len(), 2);
        assert_eq!(coins[0]["coin_id"], 3);
        assert_eq!(coins[0]["label"], "2e");
        assert_eq!(coins[0]["bin"], "bin_2e");
        assert_eq!(coins[0]["confidence"], 0.75);
        assert_eq!(coins[0]["shift_score"], 0.5);
        assert_eq!(coins[0]["out_of_distribution"], false);
        assert_eq!(
            (&coins[0]["x"], &coins[0]["y"], &coins[0]["radius"]),
            (&120.5.into(), &80.25.into(), &31.0.into())
        );
        assert_eq!(coins[1]["shift_score"], "NaN");
        assert_eq!(coins[1]["out_of_distribution"], true);

        assert_eq!(cmd["header"]["stamp"], stamp);
        assert_eq!(cmd["coin_id"], 3);
        assert_eq!(cmd["label"], "2e");
        assert_eq!(cmd["bin"], "bin_2e");
        assert_eq!(cmd["confidence"], 0.75);
        assert_eq!(cmd["frames_seen"], 1);

        let boxes = vision["detections"].as_array().unwrap();
        assert_eq!(boxes.len(), 2);
        assert_eq!(boxes[0]["id"], "3");
        assert_eq!(boxes[0]["results"][0]["hypothesis"]["class_id"], "2e");
        assert_eq!(boxes[0]["results"][0]["hypothesis"]["score"], 0.75);
        assert_eq!(boxes[0]["bbox"]["center"]["position"]["x"], 120.5);
        assert_eq!(boxes[0]["bbox"]["size_x"], 62.0);

        assert_eq!(diag["status"][0]["level"], 1);
        assert_eq!(diag["status"][0]["name"], "coin_sorter: domain shift");
        assert_eq!(diag["status"][0]["values"][0]["key"], "state");
        assert_eq!(diag["status"][0]["values"][0]["value"], "WARN");
    }
}
