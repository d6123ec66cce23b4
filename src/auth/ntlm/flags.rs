//! Wire enums of NTLM as newtypes with named constants: `NegotiateFlags` (MS-NLMP §2.2.2.5)
//! and `AvId` (§2.2.2.1).
//!
//! Newtypes rather than Rust enums so that values we do not know survive a round trip
//! (a server may set reserved bits; we echo or clear them deliberately, never lose them by
//! accident), while `Debug` still shows a name wherever one exists.

use std::fmt;
use std::ops::{BitAnd, BitOr, Not};

/// The 32-bit NegotiateFlags field of all three messages (MS-NLMP §2.2.2.5).
///
/// The value is the `u32` as MS-NLMP defines it, i.e. what is written little-endian on the
/// wire. CNTLM's `-F`/`Flags` number is the wire bytes read big-endian; convert it with
/// [`NegotiateFlags::from_cntlm_option`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NegotiateFlags(pub u32);

/// The named bits, in the order `Debug` lists them (low bit first, as MS-NLMP's table
/// ends).
const FLAG_NAMES: &[(NegotiateFlags, &str)] = &[
    (NegotiateFlags::UNICODE, "UNICODE"),
    (NegotiateFlags::OEM, "OEM"),
    (NegotiateFlags::REQUEST_TARGET, "REQUEST_TARGET"),
    (NegotiateFlags::SIGN, "SIGN"),
    (NegotiateFlags::SEAL, "SEAL"),
    (NegotiateFlags::DATAGRAM, "DATAGRAM"),
    (NegotiateFlags::LM_KEY, "LM_KEY"),
    (NegotiateFlags::NTLM, "NTLM"),
    (NegotiateFlags::ANONYMOUS, "ANONYMOUS"),
    (NegotiateFlags::OEM_DOMAIN_SUPPLIED, "OEM_DOMAIN_SUPPLIED"),
    (
        NegotiateFlags::OEM_WORKSTATION_SUPPLIED,
        "OEM_WORKSTATION_SUPPLIED",
    ),
    (NegotiateFlags::ALWAYS_SIGN, "ALWAYS_SIGN"),
    (NegotiateFlags::TARGET_TYPE_DOMAIN, "TARGET_TYPE_DOMAIN"),
    (NegotiateFlags::TARGET_TYPE_SERVER, "TARGET_TYPE_SERVER"),
    (
        NegotiateFlags::EXTENDED_SESSIONSECURITY,
        "EXTENDED_SESSIONSECURITY",
    ),
    (NegotiateFlags::IDENTIFY, "IDENTIFY"),
    (
        NegotiateFlags::REQUEST_NON_NT_SESSION_KEY,
        "REQUEST_NON_NT_SESSION_KEY",
    ),
    (NegotiateFlags::TARGET_INFO, "TARGET_INFO"),
    (NegotiateFlags::VERSION, "VERSION"),
    (NegotiateFlags::NEGOTIATE_128, "128"),
    (NegotiateFlags::KEY_EXCH, "KEY_EXCH"),
    (NegotiateFlags::NEGOTIATE_56, "56"),
];

impl NegotiateFlags {
    /// A (`NTLMSSP_NEGOTIATE_UNICODE`): strings are UTF-16LE.
    pub const UNICODE: Self = Self(0x0000_0001);
    /// B (`NTLM_NEGOTIATE_OEM`): strings are in the OEM code page.
    pub const OEM: Self = Self(0x0000_0002);
    /// C (`NTLMSSP_REQUEST_TARGET`): the server should send its TargetName.
    pub const REQUEST_TARGET: Self = Self(0x0000_0004);
    /// D (`NTLMSSP_NEGOTIATE_SIGN`): message integrity (never used by a proxy client).
    pub const SIGN: Self = Self(0x0000_0010);
    /// E (`NTLMSSP_NEGOTIATE_SEAL`): message confidentiality (never used by a proxy client).
    pub const SEAL: Self = Self(0x0000_0020);
    /// F (`NTLMSSP_NEGOTIATE_DATAGRAM`): connectionless NTLM.
    pub const DATAGRAM: Self = Self(0x0000_0040);
    /// G (`NTLMSSP_NEGOTIATE_LM_KEY`): LAN Manager session key computation.
    pub const LM_KEY: Self = Self(0x0000_0080);
    /// H (`NTLMSSP_NEGOTIATE_NTLM`): NTLM v1 session security.
    pub const NTLM: Self = Self(0x0000_0200);
    /// J: anonymous connection.
    pub const ANONYMOUS: Self = Self(0x0000_0800);
    /// K (`NTLMSSP_NEGOTIATE_OEM_DOMAIN_SUPPLIED`): the Type 1 carries a domain.
    pub const OEM_DOMAIN_SUPPLIED: Self = Self(0x0000_1000);
    /// L (`NTLMSSP_NEGOTIATE_OEM_WORKSTATION_SUPPLIED`): the Type 1 carries a workstation.
    pub const OEM_WORKSTATION_SUPPLIED: Self = Self(0x0000_2000);
    /// M (`NTLMSSP_NEGOTIATE_ALWAYS_SIGN`).
    pub const ALWAYS_SIGN: Self = Self(0x0000_8000);
    /// N (`NTLMSSP_TARGET_TYPE_DOMAIN`): TargetName is a domain.
    pub const TARGET_TYPE_DOMAIN: Self = Self(0x0001_0000);
    /// O (`NTLMSSP_TARGET_TYPE_SERVER`): TargetName is a server.
    pub const TARGET_TYPE_SERVER: Self = Self(0x0002_0000);
    /// P (`NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY`): NTLM2 session response (ESS).
    pub const EXTENDED_SESSIONSECURITY: Self = Self(0x0008_0000);
    /// Q (`NTLMSSP_NEGOTIATE_IDENTIFY`).
    pub const IDENTIFY: Self = Self(0x0010_0000);
    /// R (`NTLMSSP_REQUEST_NON_NT_SESSION_KEY`).
    pub const REQUEST_NON_NT_SESSION_KEY: Self = Self(0x0040_0000);
    /// S (`NTLMSSP_NEGOTIATE_TARGET_INFO`): the Type 2 carries TargetInfo.
    pub const TARGET_INFO: Self = Self(0x0080_0000);
    /// T (`NTLMSSP_NEGOTIATE_VERSION`): a Version field is present.
    pub const VERSION: Self = Self(0x0200_0000);
    /// U (`NTLMSSP_NEGOTIATE_128`).
    pub const NEGOTIATE_128: Self = Self(0x2000_0000);
    /// V (`NTLMSSP_NEGOTIATE_KEY_EXCH`): an EncryptedRandomSessionKey is exchanged.
    pub const KEY_EXCH: Self = Self(0x4000_0000);
    /// W (`NTLMSSP_NEGOTIATE_56`).
    pub const NEGOTIATE_56: Self = Self(0x8000_0000);

    /// CNTLM's `-F`/`Flags` number (the four wire bytes read big-endian; CNTLM applies
    /// `swap32`) as NegotiateFlags: `-F 0x07820000` is `0x00008207`.
    pub fn from_cntlm_option(number: u32) -> Self {
        Self(number.swap_bytes())
    }

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags with `other`'s bits set or cleared.
    #[must_use]
    pub fn with(self, other: Self, state: FlagState) -> Self {
        match state {
            FlagState::Set => self | other,
            FlagState::Clear => self & !other,
        }
    }

    /// The bytes as they appear on the wire.
    pub fn to_le_bytes(self) -> [u8; 4] {
        self.0.to_le_bytes()
    }
}

/// Whether [`NegotiateFlags::with`] sets or clears bits (an enum, not a `bool`, so call
/// sites read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagState {
    /// Set the bits.
    Set,
    /// Clear the bits.
    Clear,
}

impl BitOr for NegotiateFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitAnd for NegotiateFlags {
    type Output = Self;
    fn bitand(self, rhs: Self) -> Self {
        Self(self.0 & rhs.0)
    }
}

impl Not for NegotiateFlags {
    type Output = Self;
    fn not(self) -> Self {
        Self(!self.0)
    }
}

impl fmt::Debug for NegotiateFlags {
    /// `NegotiateFlags(0x00008207: UNICODE | OEM | ...)`, with unnamed bits in hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NegotiateFlags({:#010x}", self.0)?;
        let mut rest = self.0;
        let mut separator = ": ";
        for (flag, name) in FLAG_NAMES {
            if self.contains(*flag) {
                write!(f, "{separator}{name}")?;
                separator = " | ";
                rest &= !flag.0;
            }
        }
        if rest != 0 {
            write!(f, "{separator}{rest:#x}")?;
        }
        f.write_str(")")
    }
}

/// The AvId of an AV_PAIR in TargetInfo (MS-NLMP §2.2.2.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AvId(pub u16);

impl AvId {
    /// `MsvAvEOL`: the end of the list.
    pub const EOL: Self = Self(0);
    /// `MsvAvNbComputerName` (UTF-16).
    pub const NB_COMPUTER_NAME: Self = Self(1);
    /// `MsvAvNbDomainName` (UTF-16).
    pub const NB_DOMAIN_NAME: Self = Self(2);
    /// `MsvAvDnsComputerName` (UTF-16).
    pub const DNS_COMPUTER_NAME: Self = Self(3);
    /// `MsvAvDnsDomainName` (UTF-16).
    pub const DNS_DOMAIN_NAME: Self = Self(4);
    /// `MsvAvDnsTreeName` (UTF-16).
    pub const DNS_TREE_NAME: Self = Self(5);
    /// `MsvAvFlags` (u32; 0x2 means a MIC is present).
    pub const FLAGS: Self = Self(6);
    /// `MsvAvTimestamp` (FILETIME, u64 LE).
    pub const TIMESTAMP: Self = Self(7);
    /// `MsvAvSingleHost`.
    pub const SINGLE_HOST: Self = Self(8);
    /// `MsvAvTargetName` (SPN, UTF-16).
    pub const TARGET_NAME: Self = Self(9);
    /// `MsvAvChannelBindings` (MD5 of the channel bindings).
    pub const CHANNEL_BINDINGS: Self = Self(10);

    /// The MS-NLMP name of this id, when it has one.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "MsvAvEOL",
            1 => "MsvAvNbComputerName",
            2 => "MsvAvNbDomainName",
            3 => "MsvAvDnsComputerName",
            4 => "MsvAvDnsDomainName",
            5 => "MsvAvDnsTreeName",
            6 => "MsvAvFlags",
            7 => "MsvAvTimestamp",
            8 => "MsvAvSingleHost",
            9 => "MsvAvTargetName",
            10 => "MsvAvChannelBindings",
            _ => return None,
        })
    }
}

impl fmt::Debug for AvId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}({})", self.0),
            None => write!(f, "AvId({})", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ms_nlmp_2_2_2_5_debug_names_every_bit_and_keeps_unknown_ones() {
        let text = format!("{:?}", NegotiateFlags(0x0000_b207));
        assert_eq!(
            text,
            "NegotiateFlags(0x0000b207: UNICODE | OEM | REQUEST_TARGET | NTLM | \
             OEM_DOMAIN_SUPPLIED | OEM_WORKSTATION_SUPPLIED | ALWAYS_SIGN)"
        );
        let reserved = format!("{:?}", NegotiateFlags(0x1000_0001));
        assert_eq!(reserved, "NegotiateFlags(0x10000001: UNICODE | 0x10000000)");
    }

    #[test]
    fn cntlm_flags_option_is_the_wire_bytes_read_big_endian() {
        assert_eq!(
            NegotiateFlags::from_cntlm_option(0x0782_0000),
            NegotiateFlags(0x0000_8207)
        );
        assert_eq!(
            NegotiateFlags::from_cntlm_option(0x0682_0000),
            NegotiateFlags::OEM
                | NegotiateFlags::REQUEST_TARGET
                | NegotiateFlags::NTLM
                | NegotiateFlags::ALWAYS_SIGN
        );
    }

    #[test]
    fn ms_nlmp_2_2_2_1_av_ids_have_names() {
        assert_eq!(format!("{:?}", AvId::TIMESTAMP), "MsvAvTimestamp(7)");
        assert_eq!(format!("{:?}", AvId(42)), "AvId(42)");
    }
}
