//! Authentication to the parent proxy: credentials, and the schemes we speak.
//!
//! `ntlm` is the NTLM engine (hashes, messages, responses); `secret` holds the types that
//! keep passwords and hashes out of logs and wipe them on drop. `negotiate` is Kerberos
//! (HTTP Negotiate / SPNEGO) through the system GSSAPI.

pub mod negotiate;
pub mod ntlm;
pub mod secret;

pub use secret::{Hash16, Password};

/// The NTLM dialect cntlm answers a challenge with (`Auth` / `-a`).
///
/// CNTLM spells them `LM`, `NT`, `NTLM` (LM + NT), `NTLM2SR` and `NTLMv2` (the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NtlmDialect {
    /// LMv1 response only.
    Lm,
    /// NTLMv1 response only (broken in CNTLM 0.92.3, which sends 24 zero bytes; ours works).
    Nt,
    /// LMv1 and NTLMv1 responses.
    Ntlm,
    /// NTLMv1 with extended session security ("NTLM2 session response").
    Ntlm2Sr,
    /// LMv2 and NTLMv2 responses.
    #[default]
    NtlmV2,
}

impl NtlmDialect {
    /// Parses CNTLM's `Auth` value, case-insensitively.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_uppercase().as_str() {
            "LM" => Some(NtlmDialect::Lm),
            "NT" => Some(NtlmDialect::Nt),
            "NTLM" => Some(NtlmDialect::Ntlm),
            "NTLM2SR" => Some(NtlmDialect::Ntlm2Sr),
            "NTLMV2" => Some(NtlmDialect::NtlmV2),
            _ => None,
        }
    }

    /// CNTLM's spelling, as `-M` prints it.
    pub fn name(self) -> &'static str {
        match self {
            NtlmDialect::Lm => "LM",
            NtlmDialect::Nt => "NT",
            NtlmDialect::Ntlm => "NTLM",
            NtlmDialect::Ntlm2Sr => "NTLM2SR",
            NtlmDialect::NtlmV2 => "NTLMv2",
        }
    }
}

/// Who we are to the parent: user, domain, workstation and the key material.
///
/// Key material comes either from a clear-text password (every hash derivable) or from the
/// `PassLM` / `PassNT` / `PassNTLMv2` lines (only what was given).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// `Username` / `-u`, case kept (CNTLM sends it as typed).
    pub user: String,
    /// `Domain` / `-d`, as typed; upper-cased where CNTLM upper-cases it.
    pub domain: String,
    /// `Workstation` / `-w`; upper-cased on the wire.
    pub workstation: String,
    /// The clear-text password, when one was configured or typed.
    pub password: Option<Password>,
    /// LMOWFv1 from `PassLM` (already decoded from its hex form).
    pub lm_hash: Option<Hash16>,
    /// NTOWFv1 from `PassNT`.
    pub nt_hash: Option<Hash16>,
    /// NTOWFv2 (CNTLM's: user and domain upper-cased) from `PassNTLMv2`.
    pub ntlmv2_hash: Option<Hash16>,
}
