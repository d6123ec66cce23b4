//! Windows (and any non-Unix target): Negotiate through SSPI is not built yet.
//!
//! What it would take: the `windows` crate's `Win32_Security_Authentication_Identity` SSPI
//! bindings, `AcquireCredentialsHandleW` on the `Negotiate` package with no identity (single
//! sign-on as the logged-in user) or a `SEC_WINNT_AUTH_IDENTITY_W` for a configured password,
//! then `InitializeSecurityContextW` on `HTTP/<host>` once per leg, mapping
//! `SEC_I_CONTINUE_NEEDED` to an incomplete step and `SEC_E_OK` to a complete one. It cannot be
//! compiled or tested on the machines this project is built on, so until then every context
//! reports itself unavailable and cntlm falls back to NTLM or Basic.

use super::{KerberosCredentials, NegotiateError, NegotiateStep};

const REASON: &str = "SSPI not built yet: Negotiate is only implemented through GSSAPI on Unix";

/// Never `Ok` on this platform.
pub(super) fn availability() -> Result<(), String> {
    Err(REASON.to_owned())
}

/// Uninhabited: no context can be created here.
pub(super) enum Context {}

impl Context {
    pub(super) fn new(
        _service_principal: &str,
        _creds: &KerberosCredentials,
    ) -> Result<Self, NegotiateError> {
        Err(NegotiateError::Unavailable {
            reason: REASON.to_owned(),
        })
    }

    pub(super) fn is_complete(&self) -> bool {
        match *self {}
    }

    pub(super) fn step(&mut self, _input: Option<&[u8]>) -> Result<NegotiateStep, NegotiateError> {
        match *self {}
    }
}
