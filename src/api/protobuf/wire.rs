//! The protobuf wire format, read-only: enough to walk a message field by
//! field. Every read is bounds-checked; malformed input is an error.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("truncated input")]
    Truncated,
    #[error("varint longer than 10 bytes")]
    VarintOverflow,
    #[error("invalid field key (field number 0)")]
    ZeroField,
    #[error("unsupported wire type {0}")]
    WireType(u8),
}

/// How a field's value is laid out on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

/// One field occurrence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

impl WireValue<'_> {
    pub fn wire_type(&self) -> WireType {
        match self {
            WireValue::Varint(_) => WireType::Varint,
            WireValue::Fixed64(_) => WireType::Fixed64,
            WireValue::Len(_) => WireType::Len,
            WireValue::Fixed32(_) => WireType::Fixed32,
        }
    }
}

/// A cursor over a message's bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or(WireError::Truncated)?;
            self.buf = rest;
            // The 10th byte may only carry the top bit of a u64.
            if i == 9 && b > 1 {
                return Err(WireError::VarintOverflow);
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::VarintOverflow)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.buf.len() {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub fn fixed64(&mut self) -> Result<u64, WireError> {
        self.fixed::<8>().map(u64::from_le_bytes)
    }

    pub fn fixed32(&mut self) -> Result<u32, WireError> {
        self.fixed::<4>().map(u32::from_le_bytes)
    }

    /// The next field: (field number, value); None at the end.
    pub fn field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, WireError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| WireError::VarintOverflow)?;
        if number == 0 {
            return Err(WireError::ZeroField);
        }
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::Fixed64(self.fixed64()?),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| WireError::Truncated)?;
                WireValue::Len(self.take(len)?)
            }
            5 => WireValue::Fixed32(self.fixed32()?),
            // Groups (3, 4) are deprecated and never used by Kubernetes.
            other => return Err(WireError::WireType(other as u8)),
        };
        Ok(Some((number, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_varints_and_fields() {
        // field 1 varint 150, field 2 "hi", field 3 fixed32 1, field 4 fixed64 2
        let buf = [
            0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x1d, 1, 0, 0, 0, 0x21, 2, 0, 0, 0, 0, 0, 0,
            0,
        ];
        let mut r = Reader::new(&buf);
        assert_eq!(r.field().unwrap(), Some((1, WireValue::Varint(150))));
        assert_eq!(r.field().unwrap(), Some((2, WireValue::Len(b"hi"))));
        assert_eq!(r.field().unwrap(), Some((3, WireValue::Fixed32(1))));
        assert_eq!(r.field().unwrap(), Some((4, WireValue::Fixed64(2))));
        assert_eq!(r.field().unwrap(), None);
    }

    #[test]
    fn max_varint_is_accepted_and_longer_is_not() {
        let mut max = vec![0xff; 9];
        max.push(0x01);
        assert_eq!(Reader::new(&max).varint(), Ok(u64::MAX));
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert_eq!(Reader::new(&over).varint(), Err(WireError::VarintOverflow));
        assert_eq!(
            Reader::new(&[0x80; 11]).varint(),
            Err(WireError::VarintOverflow)
        );
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert_eq!(Reader::new(&[0x96]).varint(), Err(WireError::Truncated));
        // length 5, 2 bytes present
        assert_eq!(
            Reader::new(&[0x12, 0x05, 1, 2]).field(),
            Err(WireError::Truncated)
        );
        // huge length
        assert_eq!(
            Reader::new(&[0x12, 0xff, 0xff, 0xff, 0xff, 0x0f]).field(),
            Err(WireError::Truncated)
        );
        assert_eq!(Reader::new(&[0x1b]).field(), Err(WireError::WireType(3)));
        assert_eq!(
            Reader::new(&[0x00, 0x01]).field(),
            Err(WireError::ZeroField)
        );
        assert_eq!(
            Reader::new(&[0x09, 1, 2]).field(),
            Err(WireError::Truncated)
        );
    }
}
