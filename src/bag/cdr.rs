//! CDR (de)serialisation of ROS 2 messages as they are stored in bags and sent over DDS.
//!
//! A serialized ROS 2 message is a 4-byte encapsulation header followed by the CDR body.
//! The header's first two bytes name the representation: `00 00` is plain CDR big-endian,
//! `00 01` plain CDR little-endian. The other two bytes are options, which plain CDR leaves
//! unused. Alignment in the body counts from the first byte after the header.

use anyhow::{Result, anyhow, bail};
use byteorder::{BigEndian, LittleEndian};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Encapsulation header that [`encode_cdr`] writes: plain CDR, little-endian, no options.
pub const CDR_LE_HEADER: [u8; 4] = [0x00, 0x01, 0x00, 0x00];

/// Most padding a writer may append after the body to end on a 4-byte boundary.
const MAX_TRAILING_PADDING: usize = 3;

/// Deserialises one message from `data`, which starts with its encapsulation header.
///
/// Fails when the header is missing or not plain CDR, when the body is too short for `T`, or
/// when more bytes are left over than alignment padding explains (usually the wrong `T`).
pub fn decode_cdr<T: DeserializeOwned>(data: &[u8]) -> Result<T> {
    let Some((header, body)) = data.split_first_chunk::<4>() else {
        bail!("CDR data of {} bytes is shorter than its 4-byte header", data.len());
    };
    let decoded = match [header[0], header[1]] {
        [0x00, 0x00] => cdr_encoding::from_bytes::<T, BigEndian>(body),
        [0x00, 0x01] => cdr_encoding::from_bytes::<T, LittleEndian>(body),
        other => bail!(
            "CDR encapsulation {:02x}{:02x} is not supported (only plain CDR: 0000, 0001)",
            other[0],
            other[1]
        ),
    };
    let (value, used) = decoded.map_err(|e| {
        anyhow!(
            "cannot decode {} from {} bytes of CDR: {e}",
            std::any::type_name::<T>(),
            body.len()
        )
    })?;
    let left = body.len().saturating_sub(used);
    if left > MAX_TRAILING_PADDING {
        bail!(
            "{} used {used} of {} bytes of CDR; {left} bytes are left over",
            std::any::type_name::<T>(),
            body.len()
        );
    }
    Ok(value)
}

/// Serialises `msg` as plain little-endian CDR, header [`CDR_LE_HEADER`] included.
pub fn encode_cdr<T: Serialize>(msg: &T) -> Result<Vec<u8>> {
    let mut out = CDR_LE_HEADER.to_vec();
    cdr_encoding::to_writer::<T, LittleEndian, _>(&mut out, msg)
        .map_err(|e| anyhow!("cannot encode {} as CDR: {e}", std::any::type_name::<T>()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Stamped {
        sec: i32,
        nanosec: u32,
        frame_id: String,
        values: Vec<f64>,
    }

    #[test]
    fn big_endian_is_read_too() {
        // std_msgs/msg/String "hi": length 3 (including NUL), then the bytes.
        let be = [0, 0, 0, 0, 0, 0, 0, 3, b'h', b'i', 0];
        let le = [0, 1, 0, 0, 3, 0, 0, 0, b'h', b'i', 0];
        assert_eq!(decode_cdr::<String>(&be).unwrap(), "hi");
        assert_eq!(decode_cdr::<String>(&le).unwrap(), "hi");
    }

    #[test]
    fn alignment_counts_from_after_the_header() {
        let msg = Stamped { sec: 1, nanosec: 2, frame_id: "cam".into(), values: vec![0.5] };
        let bytes = encode_cdr(&msg).unwrap();
        // 4 header + 4 sec + 4 nanosec + 4 len + 4 "cam\0" + 4 count + 4 pad + 8 value.
        assert_eq!(bytes.len(), 36);
        assert_eq!(&bytes[..4], &CDR_LE_HEADER);
        assert_eq!(&bytes[28..36], &0.5f64.to_le_bytes());
    }

    #[test]
    fn unsupported_encapsulation_and_leftovers_are_errors() {
        let err = decode_cdr::<u32>(&[0, 7, 0, 0, 1, 0, 0, 0]).unwrap_err();
        assert!(err.to_string().contains("0007"), "{err}");
        let err = decode_cdr::<u8>(&[0, 1, 0, 0, 1, 2, 3, 4, 5]).unwrap_err();
        assert!(err.to_string().contains("4 bytes are left over"), "{err}");
        assert!(decode_cdr::<u32>(&[0, 1]).is_err());
    }
}
