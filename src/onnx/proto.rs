//! The few ONNX protobuf messages an export needs, written straight to protobuf's wire format.
//!
//! Field numbers are those of `onnx/onnx.proto3` (ONNX 1.23). Writing them by hand is about a
//! hundred lines, where a protobuf toolchain (prost + protoc or a vendored generated file)
//! would add a build step for six messages that netsec only ever writes, never reads.

/// A message being written: fields are appended in the order given.
#[derive(Default)]
pub struct Message(Vec<u8>);

/// Protobuf wire types.
const VARINT: u8 = 0;
const LENGTH_DELIMITED: u8 = 2;

impl Message {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn key(&mut self, field: u32, wire_type: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire_type));
    }

    /// An int32, int64 or enum field (negative values as ten-byte two's complement, as
    /// protobuf encodes them).
    pub fn int(&mut self, field: u32, value: i64) -> &mut Self {
        self.key(field, VARINT);
        self.varint(value as u64);
        self
    }

    pub fn bytes(&mut self, field: u32, value: &[u8]) -> &mut Self {
        self.key(field, LENGTH_DELIMITED);
        self.varint(value.len() as u64);
        self.0.extend_from_slice(value);
        self
    }

    pub fn string(&mut self, field: u32, value: &str) -> &mut Self {
        self.bytes(field, value.as_bytes())
    }

    pub fn message(&mut self, field: u32, value: Message) -> &mut Self {
        self.bytes(field, &value.0)
    }

    /// A packed repeated int64 field.
    pub fn packed_ints(&mut self, field: u32, values: &[i64]) -> &mut Self {
        let mut packed = Message::new();
        values.iter().for_each(|&v| packed.varint(v as u64));
        self.bytes(field, &packed.0)
    }

    /// A packed repeated float field.
    pub fn packed_floats(&mut self, field: u32, values: &[f32]) -> &mut Self {
        let packed: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.bytes(field, &packed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_protobuf_documents() {
        // protobuf's "Encoding" guide: field 1 = 150 is 08 96 01.
        assert_eq!(Message::new().int(1, 150).clone_bytes(), [0x08, 0x96, 0x01]);
        // A string "testing" in field 2: 12 07 74 65 73 74 69 6e 67.
        assert_eq!(Message::new().string(2, "testing").clone_bytes(), b"\x12\x07testing");
        // Packed repeated ints 3, 270, 86942 in field 4: 22 06 03 8E 02 9E A7 05.
        assert_eq!(
            Message::new().packed_ints(4, &[3, 270, 86942]).clone_bytes(),
            [0x22, 0x06, 0x03, 0x8e, 0x02, 0x9e, 0xa7, 0x05]
        );
        // -1 as an int64 takes ten bytes.
        assert_eq!(Message::new().int(1, -1).clone_bytes().len(), 11);
    }

    impl Message {
        fn clone_bytes(&self) -> Vec<u8> {
            self.0.clone()
        }
    }
}
