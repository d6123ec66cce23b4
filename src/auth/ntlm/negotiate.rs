//! NEGOTIATE_MESSAGE (Type 1, MS-NLMP §2.2.1.1) in CNTLM 0.92.3's exact layout.
//!
//! CNTLM sends a 32-byte header with no Version field (even when its flags set
//! `NEGOTIATE_VERSION`), then the workstation at offset 32 and the domain right after it,
//! both upper-cased OEM without a terminator. We reproduce those bytes exactly so that
//! parents tuned to CNTLM (and `-M` comparisons) see no difference.

use crate::auth::ntlm::crypto;
use crate::auth::ntlm::error::{Incompatible, NtlmError};
use crate::auth::ntlm::flags::NegotiateFlags;
use crate::auth::{Credentials, NtlmDialect};

/// `"NTLMSSP\0"`, the signature every NTLM message starts with (MS-NLMP §2.2.1).
pub const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

/// Size of CNTLM's Type 1 header: signature, type, flags, two security buffers.
const HEADER_LEN: usize = 32;

/// CNTLM 0.92.3's Type 1 flags for each `Auth` value (captured on the wire, notes §2.1).
pub fn default_flags(dialect: NtlmDialect) -> NegotiateFlags {
    NegotiateFlags(match dialect {
        NtlmDialect::NtlmV2 => 0xa208_b205,
        NtlmDialect::Ntlm2Sr => 0xa208_b207,
        NtlmDialect::Ntlm => 0x0000_b207,
        NtlmDialect::Nt => 0x0000_b205,
        NtlmDialect::Lm => 0x0000_b206,
    })
}

/// A Type 1 message about to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiateMessage {
    /// The flags to announce.
    pub flags: NegotiateFlags,
    /// Domain as sent: upper-cased OEM.
    pub domain: Vec<u8>,
    /// Workstation as sent: upper-cased OEM.
    pub workstation: Vec<u8>,
}

impl NegotiateMessage {
    /// The Type 1 CNTLM sends for `dialect`: its default flags unless `flags` overrides
    /// them, and the credentials' domain and workstation upper-cased to OEM.
    pub fn new(
        dialect: NtlmDialect,
        flags: Option<NegotiateFlags>,
        credentials: &Credentials,
    ) -> Self {
        NegotiateMessage {
            flags: flags.unwrap_or_else(|| default_flags(dialect)),
            domain: crypto::oem(&crypto::upper(&credentials.domain)),
            workstation: crypto::oem(&crypto::upper(&credentials.workstation)),
        }
    }

    /// The wire bytes: 32-byte header, then workstation, then domain (CNTLM's order).
    pub fn encode(&self) -> Result<Vec<u8>, NtlmError> {
        let domain_len = field_len("DomainName", &self.domain)?;
        let workstation_len = field_len("Workstation", &self.workstation)?;
        let workstation_offset = HEADER_LEN as u32;
        let domain_offset = workstation_offset + u32::from(workstation_len);
        let mut out = Vec::with_capacity(HEADER_LEN + self.domain.len() + self.workstation.len());
        out.extend_from_slice(SIGNATURE);
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        put_security_buffer(&mut out, domain_len, domain_offset);
        put_security_buffer(&mut out, workstation_len, workstation_offset);
        out.extend_from_slice(&self.workstation);
        out.extend_from_slice(&self.domain);
        Ok(out)
    }
}

/// The length of a payload field, refused when it does not fit a security buffer.
pub(crate) fn field_len(field: &'static str, bytes: &[u8]) -> Result<u16, NtlmError> {
    u16::try_from(bytes.len()).map_err(|_| {
        NtlmError::from(Incompatible::FieldTooLong {
            field,
            len: bytes.len(),
        })
    })
}

/// Appends `Len | MaxLen | Offset` (MS-NLMP §2.2.1: MaxLen equals Len when sending).
pub(crate) fn put_security_buffer(out: &mut Vec<u8>, len: u16, offset: u32) {
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cntlm_type1_layout_puts_workstation_before_domain() {
        let credentials = Credentials {
            domain: "corp".into(),
            workstation: "pc1".into(),
            ..Credentials::default()
        };
        let bytes = NegotiateMessage::new(NtlmDialect::Lm, None, &credentials)
            .encode()
            .expect("short names fit");
        assert_eq!(&bytes[32..], b"PC1CORP");
        assert_eq!(&bytes[12..16], &[0x06, 0xb2, 0, 0]);
    }

    #[test]
    fn flags_override_replaces_the_default() {
        let bytes = NegotiateMessage::new(
            NtlmDialect::NtlmV2,
            Some(NegotiateFlags::from_cntlm_option(0x0782_0000)),
            &Credentials::default(),
        )
        .encode()
        .expect("empty names fit");
        assert_eq!(&bytes[12..16], &[0x07, 0x82, 0, 0]);
        assert_eq!(bytes.len(), 32);
    }
}
