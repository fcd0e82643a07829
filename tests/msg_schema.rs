//! The Rust message types and `msg/*.msg` agree field by field: names, types and order, as the
//! Rust types actually serialise (a recording serde serializer reads them).

use std::fmt;

use coin_sorter::msgs::coin_sorter::{
    ActuatorState, CoinDetection, CoinDetectionArray, SortCommand,
};
use serde::ser::{self, Serialize};

#[derive(Debug)]
struct Error(String);
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Error {}
impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// Maps a Rust struct name to the type name a .msg file in this package uses for it.
fn msg_type_of_struct(name: &str) -> String {
    match name {
        "Header" => "std_msgs/Header".into(),
        "Time" => "builtin_interfaces/Time".into(),
        other => other.into(),
    }
}

/// Serialises a value to the ROS type name it has on the wire.
struct TypeName;
/// Collects a struct's fields as (name, type).
struct Fields(String, Vec<(String, String)>);
/// Serialises a sequence's first element to get the element type.
struct Elems(Option<String>);

type R = Result<String, Error>;

impl ser::Serializer for TypeName {
    type Ok = String;
    type Error = Error;
    type SerializeSeq = Elems;
    type SerializeTuple = ser::Impossible<String, Error>;
    type SerializeTupleStruct = ser::Impossible<String, Error>;
    type SerializeTupleVariant = ser::Impossible<String, Error>;
    type SerializeMap = ser::Impossible<String, Error>;
    type SerializeStruct = Fields;
    type SerializeStructVariant = ser::Impossible<String, Error>;
    fn serialize_bool(self, _: bool) -> R {
        Ok("bool".into())
    }
    fn serialize_i8(self, _: i8) -> R {
        Ok("int8".into())
    }
    fn serialize_i16(self, _: i16) -> R {
        Ok("int16".into())
    }
    fn serialize_i32(self, _: i32) -> R {
        Ok("int32".into())
    }
    fn serialize_i64(self, _: i64) -> R {
        Ok("int64".into())
    }
    fn serialize_u8(self, _: u8) -> R {
        Ok("uint8".into())
    }
    fn serialize_u16(self, _: u16) -> R {
        Ok("uint16".into())
    }
    fn serialize_u32(self, _: u32) -> R {
        Ok("uint32".into())
    }
    fn serialize_u64(self, _: u64) -> R {
        Ok("uint64".into())
    }
    fn serialize_f32(self, _: f32) -> R {
        Ok("float32".into())
    }
    fn serialize_f64(self, _: f64) -> R {
        Ok("float64".into())
    }
    fn serialize_char(self, _: char) -> R {
        Err(ser::Error::custom("char has no ROS type"))
    }
    fn serialize_str(self, _: &str) -> R {
        Ok("string".into())
    }
    fn serialize_bytes(self, _: &[u8]) -> R {
        Ok("uint8[]".into())
    }
    fn serialize_none(self) -> R {
        Err(ser::Error::custom("Option has no ROS type"))
    }
    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> R {
        Err(ser::Error::custom("Option has no ROS type"))
    }
    fn serialize_unit(self) -> R {
        Err(ser::Error::custom("unit"))
    }
    fn serialize_unit_struct(self, _: &'static str) -> R {
        Err(ser::Error::custom("unit struct"))
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> R {
        Err(ser::Error::custom("enum"))
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, v: &T) -> R {
        v.serialize(TypeName)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> R {
        Err(ser::Error::custom("enum"))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Elems, Error> {
        Ok(Elems(None))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(ser::Error::custom("tuple"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(ser::Error::custom("tuple struct"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(ser::Error::custom("enum"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(ser::Error::custom("map"))
    }
    fn serialize_struct(
        self,
        name: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, Error> {
        Ok(Fields(msg_type_of_struct(name), Vec::new()))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(ser::Error::custom("enum"))
    }
}

impl ser::SerializeSeq for Elems {
    type Ok = String;
    type Error = Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Error> {
        if self.0.is_none() {
            self.0 = Some(v.serialize(TypeName)?);
        }
        Ok(())
    }
    fn end(self) -> R {
        self.0
            .map(|t| format!("{t}[]"))
            .ok_or_else(|| ser::Error::custom("empty sequence: give the sample one element"))
    }
}

impl ser::SerializeStruct for Fields {
    type Ok = String;
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        let t = v.serialize(TypeName)?;
        self.1.push((key.to_string(), t));
        Ok(())
    }
    fn end(self) -> R {
        let fields: Vec<String> = self.1.iter().map(|(n, t)| format!("{t} {n}")).collect();
        Ok(format!("{}{{{}}}", self.0, fields.join(";")))
    }
}

/// The fields of a message as its Rust type serialises them: `type name` per field.
fn rust_fields<T: Serialize>(sample: &T) -> Vec<String> {
    let s = sample.serialize(TypeName).unwrap();
    let open = s.find('{').unwrap();
    // Nested structs are named by type only, so split the top level's fields.
    let inner = &s[open + 1..s.len() - 1];
    let mut fields = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ';' if depth == 0 => {
                fields.push(inner[start..i].to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    fields.push(inner[start..].to_string());
    fields
        .into_iter()
        .map(|f| {
            let (t, n) = f.rsplit_once(' ').unwrap();
            let t = t.split('{').next().unwrap();
            let t = if f.contains("}[]") { format!("{t}[]") } else { t.to_string() };
            format!("{t} {n}")
        })
        .collect()
}

/// The fields of `msg/<name>.msg`: `type name` per field line, comments and constants dropped.
fn msg_fields(name: &str) -> Vec<String> {
    let path = format!("{}/msg/{name}.msg", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty() && !l.contains('='))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn coin_detection_matches_its_msg_file() {
    assert_eq!(rust_fields(&CoinDetection::default()), msg_fields("CoinDetection"));
}

#[test]
fn coin_detection_array_matches_its_msg_file() {
    let sample =
        CoinDetectionArray { detections: vec![CoinDetection::default()], ..Default::default() };
    assert_eq!(rust_fields(&sample), msg_fields("CoinDetectionArray"));
    assert_eq!(
        msg_fields("CoinDetectionArray"),
        vec!["std_msgs/Header header", "CoinDetection[] detections"]
    );
}

#[test]
fn sort_command_matches_its_msg_file() {
    assert_eq!(rust_fields(&SortCommand::default()), msg_fields("SortCommand"));
}

#[test]
fn actuator_state_matches_its_msg_file() {
    let sample = ActuatorState { bins: vec![String::new()], counts: vec![0], ..Default::default() };
    assert_eq!(rust_fields(&sample), msg_fields("ActuatorState"));
}

#[test]
fn every_msg_file_has_a_rust_type_checked_here() {
    let mut names: Vec<String> = std::fs::read_dir(format!("{}/msg", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["ActuatorState.msg", "CoinDetection.msg", "CoinDetectionArray.msg", "SortCommand.msg"]
    );
}
