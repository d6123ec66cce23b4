//! AUTHENTICATE_MESSAGE (Type 3, MS-NLMP §2.2.1.3): the answer to a parsed challenge, in
//! CNTLM 0.92.3's layout, and a parser for it (tests, diagnostics and fuzzing).
//!
//! Layout (CNTLM's, byte for byte): a 64-byte header (no Version, no MIC), then the payload
//! `domain | user | workstation | LM | NT`, and an empty session key whose offset is the end
//! of the message. A proxy client only authenticates, so it sends no session key, no
//! Version and no MIC (MS-NLMP §3.2.5.2.2 checks a MIC only when the client's MsvAvFlags
//! announce one; notes §2.4).
//!
//! Deliberate differences from CNTLM, each pinned by a test:
//! - `Auth NT` sends its NT response where the header says (CNTLM writes it 24 bytes off
//!   and sends 24 zero bytes, notes §7.1).
//! - NTLMv2 stamps the blob with the server's `MsvAvTimestamp` when there is one (CNTLM uses
//!   its own clock in whole seconds), and answers a challenge with no TargetInfo (CNTLM
//!   gives up) with an AV list holding only MsvAvEOL.
//! - The client challenge comes from the OS CSPRNG.
//! - With [`Type3Profile::Negotiated`] (the default) the flags and the string encoding follow
//!   the server; [`Type3Profile::Cntlm`] keeps CNTLM's choices (see there).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::auth::ntlm::challenge::ChallengeMessage;
use crate::auth::ntlm::crypto;
use crate::auth::ntlm::error::{Incompatible, Malformed, Misbehaving, NtlmError};
use crate::auth::ntlm::flags::{FlagState, NegotiateFlags};
use crate::auth::ntlm::negotiate::{SIGNATURE, field_len, put_security_buffer};
use crate::auth::ntlm::reader::{Reader, SecurityBuffer};
use crate::auth::secret::Hash16;
use crate::auth::{Credentials, NtlmDialect};

/// CNTLM's Type 3 header: signature, type, six security buffers, flags.
const HEADER_LEN: usize = 64;

/// Seconds from 1601-01-01 (FILETIME's epoch) to 1970-01-01.
const FILETIME_UNIX_EPOCH_SECS: u64 = 11_644_473_600;

/// How closely a Type 3 follows CNTLM 0.92.3 where CNTLM and MS-NLMP disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Type3Profile {
    /// Follow the server (MS-NLMP §2.2.2.5 and §3.1.5.1.2):
    /// - strings are UTF-16LE when the challenge sets `UNICODE`, OEM when it sets only `OEM`
    ///   (CNTLM's per-dialect choice when it sets neither, rather than failing);
    /// - the flags are the challenge's, minus what we do not do (`KEY_EXCH`, `SIGN`, `SEAL`,
    ///   `LM_KEY`, `VERSION`: no session key, no signing, no Version field) and minus the
    ///   `TARGET_TYPE_*` bits (meaningful in Type 2 only), with exactly one of
    ///   `UNICODE`/`OEM` saying how our strings are encoded, and with
    ///   `EXTENDED_SESSIONSECURITY` set for NTLM2SR and cleared for the plain v1 dialects so
    ///   that a server cannot take an LM/NTLMv1 answer for an NTLM2SR one (Samba does, when
    ///   ESS is negotiated and both responses are 24 bytes). NTLMv2 keeps the server's bit.
    #[default]
    Negotiated,
    /// CNTLM 0.92.3's choices: the challenge's flags copied verbatim, strings UTF-16LE
    /// except OEM for `Auth LM` whatever the server asked. Only for byte comparisons with
    /// CNTLM; its bugs (the `Auth NT` offset, NTLMv2 without TargetInfo) stay fixed.
    Cntlm,
}

/// How a Type 3's strings are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// UTF-16LE (`NTLMSSP_NEGOTIATE_UNICODE`).
    Unicode,
    /// The OEM code page; we write Latin-1 with `?` for what does not fit.
    Oem,
}

/// The caller-chosen inputs of a Type 3: fixed in tests, fresh in production.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseInputs {
    /// The 8-byte client challenge (NTLM2SR, LMv2, NTLMv2).
    pub client_challenge: [u8; 8],
    /// The NTLMv2 blob time (FILETIME) used when the server sent no `MsvAvTimestamp`.
    pub now: u64,
    /// CNTLM's choices or the server's, where they differ.
    pub profile: Type3Profile,
}

impl ResponseInputs {
    /// A client challenge from the OS CSPRNG and the current time.
    pub fn fresh(profile: Type3Profile) -> Result<Self, NtlmError> {
        let mut client_challenge = [0u8; 8];
        getrandom::fill(&mut client_challenge).map_err(NtlmError::Random)?;
        Ok(ResponseInputs {
            client_challenge,
            now: filetime_now(),
            profile,
        })
    }
}

/// The current time as a FILETIME (100 ns ticks since 1601-01-01 UTC, MS-NLMP §2.2.2.1).
pub fn filetime_now() -> u64 {
    // A clock before 1970 is a broken clock; FILETIME of the Unix epoch is then the least
    // wrong answer, and the server's MsvAvTimestamp, when present, overrides it anyway.
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (since_unix.as_secs() + FILETIME_UNIX_EPOCH_SECS) * 10_000_000
        + u64::from(since_unix.subsec_nanos() / 100)
}

/// A Type 3 message: built by [`AuthenticateMessage::answer`] or read by
/// [`AuthenticateMessage::parse`].
///
/// `Debug` shows names and lengths only: the responses are password-equivalent material.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthenticateMessage {
    /// NegotiateFlags as sent.
    pub flags: NegotiateFlags,
    /// How the three strings are encoded.
    pub charset: Charset,
    /// LmChallengeResponse (empty for `Auth NT`).
    pub lm_response: Vec<u8>,
    /// NtChallengeResponse (empty for `Auth LM`).
    pub nt_response: Vec<u8>,
    /// Domain as sent (upper-cased).
    pub domain: String,
    /// User as sent (case kept; upper-cased in OEM, as CNTLM does).
    pub user: String,
    /// Workstation as sent (upper-cased).
    pub workstation: String,
    /// EncryptedRandomSessionKey; always empty in what we send.
    pub session_key: Vec<u8>,
}

impl std::fmt::Debug for AuthenticateMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticateMessage")
            .field("flags", &self.flags)
            .field("charset", &self.charset)
            .field("lm_response_len", &self.lm_response.len())
            .field("nt_response_len", &self.nt_response.len())
            .field("domain", &self.domain)
            .field("user", &self.user)
            .field("workstation", &self.workstation)
            .field("session_key_len", &self.session_key.len())
            .finish()
    }
}

impl AuthenticateMessage {
    /// Answers `challenge` for `dialect` with `credentials`.
    ///
    /// Key material: with a password (configured, `-p` or typed at `-I`), every key is
    /// derived from it, because it is the freshest secret the user gave (typing a new
    /// password at `-I` must win over stale `Pass*` lines). Without one, the
    /// `PassLM`/`PassNT`/`PassNTLMv2` hashes are used as given, and NTOWFv2 is derived from
    /// `PassNT` when `PassNTLMv2` is missing. NTOWFv2 follows CNTLM's convention (user and
    /// domain upper-cased, [`crypto::cntlm_ntlmv2_hash`]).
    pub fn answer(
        challenge: &ChallengeMessage<'_>,
        dialect: NtlmDialect,
        credentials: &Credentials,
        inputs: &ResponseInputs,
    ) -> Result<Self, NtlmError> {
        let sc = &challenge.server_challenge;
        let cc = &inputs.client_challenge;
        let (lm_response, nt_response) = match dialect {
            NtlmDialect::Lm => (
                crypto::lm_response(&lm_key(dialect, credentials)?, sc).to_vec(),
                Vec::new(),
            ),
            NtlmDialect::Nt => (
                Vec::new(),
                crypto::nt_response(&nt_key(dialect, credentials)?, sc).to_vec(),
            ),
            NtlmDialect::Ntlm => {
                let lm = lm_key(dialect, credentials)?;
                let nt = nt_key(dialect, credentials)?;
                (
                    crypto::lm_response(&lm, sc).to_vec(),
                    crypto::nt_response(&nt, sc).to_vec(),
                )
            }
            NtlmDialect::Ntlm2Sr => {
                let (lm, nt) = crypto::ntlm2sr_responses(&nt_key(dialect, credentials)?, sc, cc);
                (lm.to_vec(), nt.to_vec())
            }
            NtlmDialect::NtlmV2 => {
                let key = ntlmv2_key(credentials)?;
                // MS-NLMP §3.1.5.2.1: the server's MsvAvTimestamp when present, so that
                // client clock skew cannot fail a correct answer.
                let time = challenge.timestamp().unwrap_or(inputs.now);
                // No TargetInfo: the AV list is MsvAvEOL alone (CNTLM refuses here).
                let av_pairs = challenge
                    .target_info
                    .as_ref()
                    .map_or_else(|| vec![0; 4], |info| info.to_blob_bytes());
                let blob = crypto::ntlmv2_blob(time, cc, &av_pairs);
                // CNTLM always sends LMv2 too (MS-NLMP says SHOULD NOT with TargetInfo);
                // servers ignore it once NTLMv2 verifies, and v2-only parents accept it.
                (
                    crypto::lmv2_response(&key, sc, cc).to_vec(),
                    crypto::ntlmv2_response(&key, sc, &blob),
                )
            }
        };
        let charset = charset_for(challenge.flags, dialect, inputs.profile);
        let flags = match inputs.profile {
            Type3Profile::Cntlm => challenge.flags,
            Type3Profile::Negotiated => negotiated_flags(challenge.flags, dialect, charset),
        };
        let user = match charset {
            Charset::Unicode => credentials.user.clone(),
            Charset::Oem => crypto::upper(&credentials.user),
        };
        Ok(AuthenticateMessage {
            flags,
            charset,
            lm_response,
            nt_response,
            domain: crypto::upper(&credentials.domain),
            user,
            workstation: crypto::upper(&credentials.workstation),
            session_key: Vec::new(),
        })
    }

    /// The wire bytes in CNTLM's layout.
    pub fn encode(&self) -> Result<Vec<u8>, NtlmError> {
        let strings = [&self.domain, &self.user, &self.workstation].map(|s| match self.charset {
            Charset::Unicode => crypto::utf16le(s),
            Charset::Oem => crypto::oem(s),
        });
        let [domain, user, workstation] = &strings;
        // Header order: LM, NT, Domain, User, Workstation, SessionKey.
        // Payload order: Domain, User, Workstation, LM, NT, SessionKey.
        let fields: [(&'static str, &[u8]); 6] = [
            ("LmChallengeResponse", &self.lm_response),
            ("NtChallengeResponse", &self.nt_response),
            ("DomainName", domain),
            ("UserName", user),
            ("Workstation", workstation),
            ("EncryptedRandomSessionKey", &self.session_key),
        ];
        const PAYLOAD_ORDER: [usize; 6] = [2, 3, 4, 0, 1, 5];
        let mut offsets = [0u32; 6];
        let mut lens = [0u16; 6];
        let mut position = HEADER_LEN;
        for index in PAYLOAD_ORDER {
            let (name, bytes) = fields[index];
            lens[index] = field_len(name, bytes)?;
            offsets[index] = u32::try_from(position).map_err(|_| {
                NtlmError::from(Incompatible::FieldTooLong {
                    field: name,
                    len: bytes.len(),
                })
            })?;
            position += bytes.len();
        }
        let mut out = Vec::with_capacity(position);
        out.extend_from_slice(SIGNATURE);
        out.extend_from_slice(&3u32.to_le_bytes());
        for (len, offset) in lens.iter().zip(offsets) {
            put_security_buffer(&mut out, *len, offset);
        }
        out.extend_from_slice(&self.flags.to_le_bytes());
        for index in PAYLOAD_ORDER {
            out.extend_from_slice(fields[index].1);
        }
        Ok(out)
    }

    /// Parses a Type 3 (any payload order; Version and MIC, if present, are skipped since
    /// the payload is found through the descriptors). Strings are decoded as the
    /// `UNICODE` bit of its own flags says: UTF-16LE when set, Latin-1 otherwise.
    pub fn parse(bytes: &[u8]) -> Result<Self, NtlmError> {
        let too_short = Malformed::TooShort {
            len: bytes.len(),
            min: HEADER_LEN,
        };
        if bytes.len() < HEADER_LEN {
            return Err(too_short.into());
        }
        let mut reader = Reader::new(bytes);
        if reader.take(SIGNATURE.len()) != Some(SIGNATURE.as_slice()) {
            return Err(Malformed::BadSignature.into());
        }
        let message_type = reader.u32().ok_or(too_short.clone())?;
        if message_type != 3 {
            return Err(Malformed::WrongMessageType {
                found: message_type,
                expected: 3,
            }
            .into());
        }
        let mut buffers = [SecurityBuffer::default(); 6];
        for buffer in &mut buffers {
            *buffer = reader.security_buffer().ok_or(too_short.clone())?;
        }
        let flags = NegotiateFlags(reader.u32().ok_or(too_short)?);
        let names = [
            "LmChallengeResponse",
            "NtChallengeResponse",
            "DomainName",
            "UserName",
            "Workstation",
            "EncryptedRandomSessionKey",
        ];
        let mut fields: [&[u8]; 6] = [&[]; 6];
        for ((field, buffer), name) in fields.iter_mut().zip(buffers).zip(names) {
            *field = buffer.resolve(bytes).ok_or(Malformed::FieldOutOfBounds {
                field: name,
                offset: buffer.offset,
                len: buffer.len,
                message_len: bytes.len(),
            })?;
        }
        let charset = if flags.contains(NegotiateFlags::UNICODE) {
            Charset::Unicode
        } else {
            Charset::Oem
        };
        let [lm, nt, domain, user, workstation, session_key] = fields;
        Ok(AuthenticateMessage {
            flags,
            charset,
            lm_response: lm.to_vec(),
            nt_response: nt.to_vec(),
            domain: decode_string("DomainName", domain, charset)?,
            user: decode_string("UserName", user, charset)?,
            workstation: decode_string("Workstation", workstation, charset)?,
            session_key: session_key.to_vec(),
        })
    }
}

/// Decodes a Type 3 string in `charset` (OEM read as Latin-1, the inverse of `crypto::oem`).
fn decode_string(field: &'static str, bytes: &[u8], charset: Charset) -> Result<String, NtlmError> {
    match charset {
        Charset::Oem => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
        Charset::Unicode => {
            let units = bytes.chunks_exact(2);
            if !units.remainder().is_empty() {
                return Err(Misbehaving::NotUtf16 { field }.into());
            }
            let units: Vec<u16> = units.map(|u| u16::from_le_bytes([u[0], u[1]])).collect();
            String::from_utf16(&units).map_err(|_| Misbehaving::NotUtf16 { field }.into())
        }
    }
}

/// The string encoding of our Type 3 (see [`Type3Profile`]).
fn charset_for(server: NegotiateFlags, dialect: NtlmDialect, profile: Type3Profile) -> Charset {
    let cntlm_choice = match dialect {
        NtlmDialect::Lm => Charset::Oem,
        _ => Charset::Unicode,
    };
    match profile {
        Type3Profile::Cntlm => cntlm_choice,
        // MS-NLMP §2.2.2.5: A set means Unicode; A clear and B set means OEM.
        Type3Profile::Negotiated if server.contains(NegotiateFlags::UNICODE) => Charset::Unicode,
        Type3Profile::Negotiated if server.contains(NegotiateFlags::OEM) => Charset::Oem,
        Type3Profile::Negotiated => cntlm_choice,
    }
}

/// The Type 3 flags of [`Type3Profile::Negotiated`].
fn negotiated_flags(
    server: NegotiateFlags,
    dialect: NtlmDialect,
    charset: Charset,
) -> NegotiateFlags {
    let not_done = NegotiateFlags::KEY_EXCH
        | NegotiateFlags::SIGN
        | NegotiateFlags::SEAL
        | NegotiateFlags::LM_KEY
        | NegotiateFlags::VERSION
        | NegotiateFlags::TARGET_TYPE_DOMAIN
        | NegotiateFlags::TARGET_TYPE_SERVER;
    let (unicode, oem) = match charset {
        Charset::Unicode => (FlagState::Set, FlagState::Clear),
        Charset::Oem => (FlagState::Clear, FlagState::Set),
    };
    let flags = server
        .with(not_done, FlagState::Clear)
        .with(NegotiateFlags::UNICODE, unicode)
        .with(NegotiateFlags::OEM, oem);
    let ess = NegotiateFlags::EXTENDED_SESSIONSECURITY;
    match dialect {
        NtlmDialect::Ntlm2Sr => flags.with(ess, FlagState::Set),
        NtlmDialect::Lm | NtlmDialect::Nt | NtlmDialect::Ntlm => flags.with(ess, FlagState::Clear),
        NtlmDialect::NtlmV2 => flags,
    }
}

/// LMOWFv1: from the password, else `PassLM`.
fn lm_key(dialect: NtlmDialect, credentials: &Credentials) -> Result<Hash16, NtlmError> {
    credentials
        .password
        .as_ref()
        .map(crypto::lm_hash)
        .or_else(|| credentials.lm_hash.clone())
        .ok_or(NtlmError::MissingKey {
            dialect,
            needs: "PassLM",
        })
}

/// NTOWFv1: from the password, else `PassNT`.
fn nt_key(dialect: NtlmDialect, credentials: &Credentials) -> Result<Hash16, NtlmError> {
    credentials
        .password
        .as_ref()
        .map(crypto::nt_hash)
        .or_else(|| credentials.nt_hash.clone())
        .ok_or(NtlmError::MissingKey {
            dialect,
            needs: "PassNT",
        })
}

/// NTOWFv2 (CNTLM's convention): from the password, else `PassNTLMv2`, else from `PassNT`
/// with the user and domain.
fn ntlmv2_key(credentials: &Credentials) -> Result<Hash16, NtlmError> {
    if credentials.password.is_none()
        && let Some(key) = &credentials.ntlmv2_hash
    {
        return Ok(key.clone());
    }
    let nt = nt_key(NtlmDialect::NtlmV2, credentials).map_err(|_| NtlmError::MissingKey {
        dialect: NtlmDialect::NtlmV2,
        needs: "PassNTLMv2 or PassNT",
    })?;
    Ok(crypto::cntlm_ntlmv2_hash(
        &nt,
        &credentials.user,
        &credentials.domain,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_names_and_lengths_never_responses() {
        let msg = AuthenticateMessage {
            flags: NegotiateFlags::UNICODE,
            charset: Charset::Unicode,
            lm_response: vec![0xab; 24],
            nt_response: vec![0xcd; 24],
            domain: "D".into(),
            user: "u".into(),
            workstation: "W".into(),
            session_key: Vec::new(),
        };
        let text = format!("{msg:?}");
        assert!(text.contains("lm_response_len: 24"), "{text}");
        assert!(
            !text.contains("171") && !text.to_lowercase().contains("ab, "),
            "{text}"
        );
    }

    #[test]
    fn ms_nlmp_2_2_2_5_unicode_wins_over_oem_and_neither_falls_back_to_cntlm() {
        let both = NegotiateFlags::UNICODE | NegotiateFlags::OEM;
        let neither = NegotiateFlags::NTLM;
        let p = Type3Profile::Negotiated;
        assert_eq!(charset_for(both, NtlmDialect::Lm, p), Charset::Unicode);
        assert_eq!(
            charset_for(NegotiateFlags::OEM, NtlmDialect::NtlmV2, p),
            Charset::Oem
        );
        assert_eq!(charset_for(neither, NtlmDialect::Lm, p), Charset::Oem);
        assert_eq!(charset_for(neither, NtlmDialect::Nt, p), Charset::Unicode);
        assert_eq!(
            charset_for(both, NtlmDialect::Lm, Type3Profile::Cntlm),
            Charset::Oem
        );
    }

    #[test]
    fn ntlm2sr_sets_extended_session_security_even_when_the_server_did_not() {
        let server = NegotiateFlags(0x0000_8201);
        let flags = negotiated_flags(server, NtlmDialect::Ntlm2Sr, Charset::Unicode);
        assert!(flags.contains(NegotiateFlags::EXTENDED_SESSIONSECURITY));
        let flags = negotiated_flags(NegotiateFlags(0xe28a_8233), NtlmDialect::Ntlm, Charset::Oem);
        assert_eq!(flags, NegotiateFlags(0xa080_8202));
    }

    #[test]
    fn filetime_now_is_after_2020() {
        // 2020-01-01 as FILETIME; a clock this wrong would fail NTLMv2 without a server
        // timestamp, so the conversion itself must not be the culprit.
        assert!(filetime_now() > 132_223_104_000_000_000);
    }
}
