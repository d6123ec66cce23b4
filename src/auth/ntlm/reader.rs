//! A bounds-checked cursor over untrusted NTLM bytes (in the manner of rustls' `Reader`).
//!
//! Every length and offset that comes off the wire is resolved here, with checked
//! arithmetic and `slice::get`, so no other code ever indexes a message with a number it
//! read from the peer. Each read either returns the bytes it promised or `None`; callers turn
//! `None` into a typed error that says which field was short.

/// A forward-only cursor over a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    /// The bytes being read.
    buf: &'a [u8],
    /// How many of them have been consumed.
    offset: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the first byte of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, offset: 0 }
    }

    /// Takes the next `len` bytes, or `None` (consuming nothing) when fewer are left.
    pub fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.offset.checked_add(len)?;
        let bytes = self.buf.get(self.offset..end)?;
        self.offset = end;
        Some(bytes)
    }

    /// Takes the next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// Reads a little-endian `u16` (all NTLM integers are little-endian, MS-NLMP §2.2).
    pub fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    /// Reads a little-endian `u32`.
    pub fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    /// Reads a little-endian `u64`.
    pub fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// Reads a security buffer descriptor: `Len u16 | MaxLen u16 | Offset u32` (§2.2.1).
    ///
    /// `MaxLen` is read and ignored, as MS-NLMP tells receivers to.
    pub fn security_buffer(&mut self) -> Option<SecurityBuffer> {
        let len = self.u16()?;
        let _max_len = self.u16()?;
        let offset = self.u32()?;
        Some(SecurityBuffer { len, offset })
    }

    /// Number of bytes not yet consumed.
    pub fn left(&self) -> usize {
        self.buf.len().saturating_sub(self.offset)
    }

    /// Whether any byte is left.
    pub fn any_left(&self) -> bool {
        self.left() > 0
    }

    /// How many bytes have been consumed so far.
    pub fn position(&self) -> usize {
        self.offset
    }

    /// The bytes not yet consumed, consuming them.
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = self.buf.get(self.offset..).unwrap_or_default();
        self.offset = self.buf.len();
        rest
    }
}

/// A security buffer descriptor as read off the wire: where a payload field claims to be.
///
/// It is only a claim until `resolve` checks it against the message it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SecurityBuffer {
    /// Claimed length in bytes.
    pub len: u16,
    /// Claimed offset from the start of the message.
    pub offset: u32,
}

impl SecurityBuffer {
    /// The bytes this descriptor points at inside `message`, or `None` when it points
    /// (partly) outside. An empty field resolves to an empty slice whatever its offset,
    /// because senders commonly leave garbage offsets on empty fields.
    pub fn resolve<'a>(&self, message: &'a [u8]) -> Option<&'a [u8]> {
        if self.len == 0 {
            return Some(&[]);
        }
        let start = usize::try_from(self.offset).ok()?;
        let end = start.checked_add(usize::from(self.len))?;
        message.get(start..end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_refuses_to_overrun() {
        let mut r = Reader::new(&[1, 0, 2, 0, 0, 0, 9]);
        assert_eq!(r.u16(), Some(1));
        assert_eq!(r.u32(), Some(2));
        assert_eq!(r.u16(), None, "one byte left, a u16 needs two");
        assert_eq!(r.left(), 1, "a failed read consumes nothing");
        assert_eq!(r.rest(), &[9]);
        assert!(!r.any_left());
    }

    #[test]
    fn security_buffer_resolution_is_bounded_by_the_message() {
        let msg = [0u8; 16];
        let inside = SecurityBuffer { len: 4, offset: 12 };
        assert_eq!(inside.resolve(&msg).map(<[u8]>::len), Some(4));
        let past_end = SecurityBuffer { len: 5, offset: 12 };
        assert_eq!(past_end.resolve(&msg), None);
        let huge_offset = SecurityBuffer {
            len: 1,
            offset: u32::MAX,
        };
        assert_eq!(huge_offset.resolve(&msg), None);
        let empty = SecurityBuffer {
            len: 0,
            offset: u32::MAX,
        };
        assert_eq!(empty.resolve(&msg), Some(&[][..]));
    }
}
