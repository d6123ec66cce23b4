//! CHALLENGE_MESSAGE (Type 2, MS-NLMP §2.2.1.2): the parent's untrusted bytes, parsed once
//! through the bounds-checked [`Reader`] into a checked view.
//!
//! Differences from CNTLM 0.92.3, on purpose:
//! - the signature and MessageType are checked (CNTLM reads any 24+ bytes);
//! - the message is at most `max_len` bytes (16 KiB by default), and its fields and AV pairs
//!   are bounded by both their own length and the message, in time linear in the input
//!   (CNTLM ignores TargetInfoLen and, on an AvLen of 0xFFFC, wraps its 16-bit position and
//!   loops forever);
//! - `MsvAvTimestamp` is extracted so that NTLMv2 can use the server's clock (§3.1.5.2.1).

use crate::auth::ntlm::error::{Incompatible, Malformed, Misbehaving, NtlmError};
use crate::auth::ntlm::flags::{AvId, NegotiateFlags};
use crate::auth::ntlm::negotiate::SIGNATURE;
use crate::auth::ntlm::reader::{Reader, SecurityBuffer};

/// The Type 2 size limit used unless configured otherwise (DESIGN.md §2 limits).
pub const DEFAULT_MAX_LEN: usize = 16 * 1024;

/// Signature, MessageType, TargetNameFields, NegotiateFlags, ServerChallenge: the least a
/// Type 2 must carry. Old servers stop here (no Reserved, no TargetInfoFields).
const MIN_LEN: usize = 32;

/// Where the header ends when it includes Reserved and TargetInfoFields.
const TARGET_INFO_HEADER_END: usize = 48;

/// A parsed, bounds-checked Type 2 message borrowing the bytes it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeMessage<'a> {
    /// The server's NegotiateFlags.
    pub flags: NegotiateFlags,
    /// The 8-byte ServerChallenge.
    pub server_challenge: [u8; 8],
    /// The TargetName payload, raw (its encoding follows `flags`); empty when absent.
    pub target_name: &'a [u8],
    /// The TargetInfo AV pairs, when the server sent any.
    pub target_info: Option<TargetInfo<'a>>,
}

/// TargetInfo (MS-NLMP §2.2.2.1): a checked AV pair list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo<'a> {
    /// The pairs before MsvAvEOL, every one of which fits inside the field.
    pairs: &'a [u8],
    /// The first MsvAvTimestamp value (FILETIME), if any.
    timestamp: Option<u64>,
}

/// One AV pair of a checked TargetInfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvPair<'a> {
    /// Which attribute.
    pub id: AvId,
    /// Its value, raw.
    pub value: &'a [u8],
}

impl<'a> ChallengeMessage<'a> {
    /// Parses a Type 2 of at most `max_len` bytes.
    ///
    /// TargetInfo is read when the header has room for its descriptor (48 bytes or more).
    /// When the server does not set `NEGOTIATE_TARGET_INFO`, MS-NLMP says the descriptor is
    /// zero; a non-empty, well-formed one is still used (CNTLM ignores the flag and some
    /// parents rely on that), and an invalid one is ignored rather than fatal.
    pub fn parse(bytes: &'a [u8], max_len: usize) -> Result<Self, NtlmError> {
        if bytes.len() > max_len {
            return Err(Incompatible::TooLong {
                len: bytes.len(),
                max: max_len,
            }
            .into());
        }
        let too_short = Malformed::TooShort {
            len: bytes.len(),
            min: MIN_LEN,
        };
        let mut reader = Reader::new(bytes);
        let signature = reader.take(SIGNATURE.len()).ok_or(too_short.clone())?;
        if signature != SIGNATURE {
            return Err(Malformed::BadSignature.into());
        }
        let message_type = reader.u32().ok_or(too_short.clone())?;
        if message_type != 2 {
            return Err(Malformed::WrongMessageType {
                found: message_type,
                expected: 2,
            }
            .into());
        }
        let target_name_field = reader.security_buffer().ok_or(too_short.clone())?;
        let flags = NegotiateFlags(reader.u32().ok_or(too_short.clone())?);
        let server_challenge = reader.array::<8>().ok_or(too_short)?;
        let target_info_field = if bytes.len() >= TARGET_INFO_HEADER_END {
            let _reserved = reader.take(8);
            reader.security_buffer()
        } else {
            None
        };

        // Nothing we compute uses TargetName (NTLMv2 takes the names from TargetInfo), and
        // Squid's `ntlm_fake_auth` sends its offset as filler bytes (0xaaaaaaae): CNTLM
        // never reads it, so an unusable TargetName is taken as absent, not as fatal.
        let target_name = target_name_field.resolve(bytes).unwrap_or_default();
        let target_info = match target_info_field {
            None => None,
            Some(field) if flags.contains(NegotiateFlags::TARGET_INFO) => {
                let raw = resolve("TargetInfo", field, bytes)?;
                TargetInfo::parse(raw)?
            }
            Some(field) => field
                .resolve(bytes)
                .and_then(|raw| TargetInfo::parse(raw).ok().flatten()),
        };
        Ok(ChallengeMessage {
            flags,
            server_challenge,
            target_name,
            target_info,
        })
    }

    /// The server's `MsvAvTimestamp`, when its TargetInfo carries one.
    pub fn timestamp(&self) -> Option<u64> {
        self.target_info.as_ref().and_then(TargetInfo::timestamp)
    }
}

/// Resolves a security buffer inside `message`, or says which field lied.
fn resolve<'a>(
    field: &'static str,
    buffer: SecurityBuffer,
    message: &'a [u8],
) -> Result<&'a [u8], NtlmError> {
    buffer.resolve(message).ok_or_else(|| {
        Malformed::FieldOutOfBounds {
            field,
            offset: buffer.offset,
            len: buffer.len,
            message_len: message.len(),
        }
        .into()
    })
}

impl<'a> TargetInfo<'a> {
    /// Checks an AV pair list; `None` when it holds no pair before MsvAvEOL.
    ///
    /// Every AvLen must fit inside the field (MS-NLMP §2.2.2.1). A list that ends without
    /// MsvAvEOL, or with 1..3 stray bytes, is accepted up to its last whole pair: we always
    /// re-terminate it ourselves, and the NTLMv2 proof covers the bytes we send.
    pub fn parse(field: &'a [u8]) -> Result<Option<Self>, NtlmError> {
        let mut reader = Reader::new(field);
        let mut timestamp = None;
        let mut end = 0;
        // Each turn consumes at least the 4-byte pair header, so this is linear in `field`.
        while let (Some(id), Some(len)) = (reader.u16().map(AvId), reader.u16()) {
            if id == AvId::EOL {
                break;
            }
            let at = end;
            let value = reader
                .take(usize::from(len))
                .ok_or(Malformed::AvPairOverrun {
                    at,
                    len,
                    available: reader.left(),
                })?;
            if id == AvId::TIMESTAMP {
                let filetime: [u8; 8] = value
                    .try_into()
                    .map_err(|_| Misbehaving::TimestampLength { len })?;
                timestamp.get_or_insert(u64::from_le_bytes(filetime));
            }
            end = reader.position();
        }
        let pairs = field.get(..end).unwrap_or_default();
        if pairs.is_empty() {
            return Ok(None);
        }
        Ok(Some(TargetInfo { pairs, timestamp }))
    }

    /// The first `MsvAvTimestamp` (FILETIME: 100 ns ticks since 1601-01-01 UTC).
    pub fn timestamp(&self) -> Option<u64> {
        self.timestamp
    }

    /// The pairs in order, MsvAvEOL excluded.
    pub fn pairs(&self) -> impl Iterator<Item = AvPair<'a>> + 'a {
        let mut reader = Reader::new(self.pairs);
        std::iter::from_fn(move || {
            let id = AvId(reader.u16()?);
            let len = reader.u16()?;
            let value = reader.take(usize::from(len))?;
            Some(AvPair { id, value })
        })
    }

    /// The list as it goes into the NTLMv2 blob: the pairs, then MsvAvEOL.
    ///
    /// For a well-formed list this is the server's bytes through MsvAvEOL, exactly what
    /// CNTLM copies.
    pub fn to_blob_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.pairs.len() + 4);
        out.extend_from_slice(self.pairs);
        out.extend_from_slice(&[0; 4]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 48-byte Type 2 header whose TargetInfo descriptor says `len` bytes at `offset`.
    fn header(flags: u32, target_info_len: u16, target_info_offset: u32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(SIGNATURE);
        m.extend_from_slice(&2u32.to_le_bytes());
        m.extend_from_slice(&[0, 0, 0, 0, 48, 0, 0, 0]);
        m.extend_from_slice(&flags.to_le_bytes());
        m.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&target_info_len.to_le_bytes());
        m.extend_from_slice(&target_info_len.to_le_bytes());
        m.extend_from_slice(&target_info_offset.to_le_bytes());
        m
    }

    #[test]
    fn old_32_byte_challenge_has_no_target_info() {
        let full = header(0x0000_8201, 0, 0);
        let msg = ChallengeMessage::parse(&full[..32], DEFAULT_MAX_LEN).expect("valid");
        assert_eq!(msg.server_challenge, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(msg.target_info, None);
    }

    #[test]
    fn timestamp_is_extracted_and_eol_is_optional() {
        let mut m = header(0x0080_8201, 16, 48);
        m.extend_from_slice(&[7, 0, 8, 0]);
        m.extend_from_slice(&0x01d0_0000_0000_0001u64.to_le_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        let msg = ChallengeMessage::parse(&m, DEFAULT_MAX_LEN).expect("valid");
        assert_eq!(msg.timestamp(), Some(0x01d0_0000_0000_0001));
        let without_eol = &m[..m.len() - 4];
        let mut short = without_eol.to_vec();
        short[40] = 12;
        short[42] = 12;
        let msg = ChallengeMessage::parse(&short, DEFAULT_MAX_LEN).expect("valid");
        let info = msg.target_info.expect("one pair");
        assert_eq!(info.to_blob_bytes(), m[48..].to_vec());
        assert_eq!(info.pairs().count(), 1);
    }

    #[test]
    fn timestamp_of_the_wrong_size_is_misbehaving() {
        let mut m = header(0x0080_8201, 8, 48);
        m.extend_from_slice(&[7, 0, 4, 0, 1, 2, 3, 4]);
        let err = ChallengeMessage::parse(&m, DEFAULT_MAX_LEN).expect_err("bad timestamp");
        assert!(matches!(
            err,
            NtlmError::Misbehaving(Misbehaving::TimestampLength { len: 4 })
        ));
    }

    #[test]
    fn invalid_target_info_without_the_flag_is_ignored() {
        let m = header(0x0000_8201, 100, 48);
        let msg = ChallengeMessage::parse(&m, DEFAULT_MAX_LEN).expect("flag clear: ignored");
        assert_eq!(msg.target_info, None);
    }
}
