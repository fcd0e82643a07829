//! `vision_msgs` (4.x, Humble and Jazzy) and the `geometry_msgs` types it needs, so rviz,
//! Foxglove and other detectors' consumers read the coins without our own message package.

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::coin_sorter::CoinDetectionArray;
use super::std_msgs::Header;

/// `geometry_msgs/msg/Point`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub z: f64,
}

/// `geometry_msgs/msg/Quaternion`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quaternion {
    pub x: f64,
    pub y: f64,
    pub z: f64,
    pub w: f64,
}

impl Default for Quaternion {
    /// The identity rotation, as ROS 2 initialises it.
    fn default() -> Self {
        Self { x: 0.0, y: 0.0, z: 0.0, w: 1.0 }
    }
}

/// `geometry_msgs/msg/Pose`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Pose {
    pub position: Point,
    pub orientation: Quaternion,
}

/// The `float64[36]` row-major 6×6 covariance of `PoseWithCovariance`. A fixed-size CDR array
/// has no length prefix: it is written as a 36-tuple.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Covariance(pub [f64; 36]);

impl Default for Covariance {
    fn default() -> Self {
        Self([0.0; 36])
    }
}

impl Serialize for Covariance {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(36)?;
        for v in &self.0 {
            t.serialize_element(v)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for Covariance {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Values;
        impl<'de> Visitor<'de> for Values {
            type Value = Covariance;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("36 float64 values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Covariance, A::Error> {
                let mut out = [0.0; 36];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot =
                        seq.next_element()?.ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                Ok(Covariance(out))
            }
        }
        d.deserialize_tuple(36, Values)
    }
}

/// `geometry_msgs/msg/PoseWithCovariance`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PoseWithCovariance {
    pub pose: Pose,
    pub covariance: Covariance,
}

/// `vision_msgs/msg/Point2D`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Point2D {
    pub x: f64,
    pub y: f64,
}

/// `vision_msgs/msg/Pose2D`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Pose2D {
    pub position: Point2D,
    pub theta: f64,
}

/// `vision_msgs/msg/BoundingBox2D`: centre and size in pixels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BoundingBox2D {
    pub center: Pose2D,
    pub size_x: f64,
    pub size_y: f64,
}

/// `vision_msgs/msg/ObjectHypothesis`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectHypothesis {
    pub class_id: String,
    pub score: f64,
}

/// `vision_msgs/msg/ObjectHypothesisWithPose`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectHypothesisWithPose {
    pub hypothesis: ObjectHypothesis,
    pub pose: PoseWithCovariance,
}

/// `vision_msgs/msg/Detection2D`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Detection2D {
    pub header: Header,
    pub results: Vec<ObjectHypothesisWithPose>,
    pub bbox: BoundingBox2D,
    pub id: String,
}

/// `vision_msgs/msg/Detection2DArray`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Detection2DArray {
    pub header: Header,
    pub detections: Vec<Detection2D>,
}

impl From<&CoinDetectionArray> for Detection2DArray {
    /// One `Detection2D` per coin: the square around its circle, its label and confidence as
    /// the single hypothesis (whatever bin it goes to), its centre as the hypothesis' pose
    /// (z = 0, no rotation), and its `coin_id` as `id`.
    fn from(a: &CoinDetectionArray) -> Self {
        let detections = a
            .detections
            .iter()
            .map(|c| {
                let (x, y, side) = (f64::from(c.x), f64::from(c.y), 2.0 * f64::from(c.radius));
                let mut pose = PoseWithCovariance::default();
                pose.pose.position = Point { x, y, z: 0.0 };
                Detection2D {
                    header: a.header.clone(),
                    results: vec![ObjectHypothesisWithPose {
                        hypothesis: ObjectHypothesis {
                            class_id: c.label.clone(),
                            score: f64::from(c.confidence),
                        },
                        pose,
                    }],
                    bbox: BoundingBox2D {
                        center: Pose2D { position: Point2D { x, y }, theta: 0.0 },
                        size_x: side,
                        size_y: side,
                    },
                    id: c.coin_id.to_string(),
                }
            })
            .collect();
        Self { header: a.header.clone(), detections }
    }
}

super::ros_message!(Detection2DArray, "vision_msgs", "Detection2DArray");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgs::coin_sorter::CoinDetection;

    #[test]
    fn coins_become_square_boxes_with_one_hypothesis() {
        let a = CoinDetectionArray {
            header: Header { frame_id: "cam".into(), ..Default::default() },
            detections: vec![CoinDetection {
                coin_id: 7,
                label: "2e".into(),
                confidence: 0.5,
                x: 10.0,
                y: 20.0,
                radius: 4.0,
                ..Default::default()
            }],
        };
        let v = Detection2DArray::from(&a);
        let d = &v.detections[0];
        assert_eq!((d.id.as_str(), d.header.frame_id.as_str()), ("7", "cam"));
        assert_eq!(d.bbox.center.position, Point2D { x: 10.0, y: 20.0 });
        assert_eq!((d.bbox.size_x, d.bbox.size_y), (8.0, 8.0));
        assert_eq!(d.results[0].hypothesis, ObjectHypothesis { class_id: "2e".into(), score: 0.5 });
        assert_eq!(d.results[0].pose.pose.orientation.w, 1.0);
    }

    #[test]
    fn the_covariance_is_36_values_without_a_length() {
        let mut p = PoseWithCovariance::default();
        p.covariance.0[35] = 2.0;
        let bytes = crate::bag::cdr::encode_cdr(&p).unwrap();
        assert_eq!(bytes.len(), 4 + 7 * 8 + 36 * 8, "header, pose, 36 doubles, no length");
        let back: PoseWithCovariance = crate::bag::cdr::decode_cdr(&bytes).unwrap();
        assert_eq!(back, p);
    }
}
